// Figures a worker measures that no event carries (time to Running, restore memory preparation, codec fallbacks):
// appended to a capped Redis stream that the API's metrics observer reads, as webhook outcomes are.
import type { Redis } from "ioredis";
import { selectCodecBackendOrExit } from "../codec/backend.ts";
import type { CodecBackendChoice } from "../codec/options.ts";
import type { Logger } from "../logger.ts";
import { HYPERVISOR } from "../schemas/common.ts";
import { z } from "../zod.ts";

export const workerFigureStreamKey = (prefix: string) => `${prefix}:metrics:worker-figures`;

/** Figures are consumed within seconds; the cap only bounds a stream nobody reads. */
const FIGURE_STREAM_MAX_LENGTH = 10_000;

/** The commands whose job ends with the instance Running. */
export const RUNNING_OPERATIONS = ["create", "start", "restore", "fork", "snapshot_restore"] as const;
export type RunningOperation = (typeof RUNNING_OPERATIONS)[number];

export const WORKER_FIGURE = z.discriminatedUnion("kind", [
  /** From the job's enqueueing (the API accepted the command) to the instance Running on its host. */
  z.object({
    kind: z.literal("time_to_running"),
    operation: z.enum(RUNNING_OPERATIONS),
    hypervisor: HYPERVISOR,
    seconds: z.number().nonnegative(),
  }),
  /** A restore readying the instance's RAM: `decompress` when a standby compression had packed it, else `raw`. */
  z.object({
    kind: z.literal("restore_memory_prepare"),
    hypervisor: HYPERVISOR,
    restore_source: z.enum(["raw", "decompress"]),
    result: z.enum(["success", "failed"]),
    seconds: z.number().nonnegative(),
  }),
  /** A process asked for `auto` and the native addon did not load: the packages backend runs instead. */
  z.object({
    kind: z.literal("codec_fallback"),
    process: z.string(),
    reason: z.enum(["native_unavailable"]),
  }),
]);
export type WorkerFigure = z.infer<typeof WORKER_FIGURE>;

export async function reportWorkerFigure(redis: Redis, prefix: string, figure: WorkerFigure): Promise<void> {
  await redis.xadd(
    workerFigureStreamKey(prefix),
    "MAXLEN",
    "~",
    String(FIGURE_STREAM_MAX_LENGTH),
    "*",
    "figure",
    JSON.stringify(WORKER_FIGURE.parse(figure)),
  );
}

/** A reporter for work that must not fail because a figure could not be sent: failures are logged. */
export function workerFigureReporter(redis: Redis, prefix: string, log: Logger): (figure: WorkerFigure) => void {
  return (figure) =>
    void reportWorkerFigure(redis, prefix, figure).catch((error: Error) =>
      log.warn({ kind: figure.kind, err: error.message }, "worker figure not reported"),
    );
}

export function decodeWorkerFigure(fields: string[]): WorkerFigure {
  const index = fields.indexOf("figure");
  if (index < 0 || index % 2 !== 0) throw new Error("stream entry has no figure field");
  return WORKER_FIGURE.parse(JSON.parse(fields[index + 1]!));
}

/** A worker's codec backend, selected at boot; a fall back to the portable backend is reported as a figure. */
export function selectWorkerCodec(
  choice: CodecBackendChoice,
  log: Logger,
  process: Extract<WorkerFigure, { kind: "codec_fallback" }>["process"],
  reportFigure: (figure: WorkerFigure) => void,
): Promise<unknown> {
  return selectCodecBackendOrExit(choice, log, {
    onCodecFallback: () => reportFigure({ kind: "codec_fallback", process, reason: "native_unavailable" }),
  });
}
