// One snapshot pipeline against the live service, as a patient client would drive it while processes die under it:
// create instance → Standby snapshot with compression → wait compressed → fork → delete fork → delete snapshot.
// With two hosts, odd pipelines fork on the host that does not own the snapshot: it pulls a replica, which deleting
// the snapshot must drop.
// Calls are retried on network errors, 5xx and 504; a create that may have happened already is looked up by name.
import { randomUUID } from "node:crypto";
import type { ResourceKind } from "./compare.ts";

export interface SoakClient {
  baseUrl: string;
  apiKey: () => string;
  /** Ids the API acknowledged, and whether the soak deleted them since. */
  acknowledged: Map<string, { kind: ResourceKind; deleted: boolean }>;
  /** Aborted at the soak's deadline: every wait and retry ends then. */
  signal: AbortSignal;
  log: (line: string) => void;
  /** Called after each step: where the soak's chaos strikes between one durable change and the next. */
  afterStep: () => Promise<void>;
  /** zstd level of the pipeline's snapshots: higher keeps the compression worker busy long enough to die mid-job. */
  compressionLevel: number;
  /** The fleet's host ids: odd pipelines fork on a host other than the snapshot's, which pulls a replica. */
  hostIds: string[];
}

/** Steps of one pipeline, for the soak's progress count. */
export const PIPELINE_STEPS = 7;

// biome-ignore lint/suspicious/noExplicitAny: resources are checked field by field at the end, not typed here
type Json = any;

const RETRY_MS = 1_000;
const STEP_TIMEOUT_MS = 300_000;

class StepFailed extends Error {}

/** The retry/poll interval of a step (what it waits for has no event the soak can subscribe to). */
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw new StepFailed("soak deadline");
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * One HTTP call; undefined when it should be retried (network error, 502/503/504, 500 from a dying process, or the
 * 409 of a keyed request that runs on after its 504: a later retry with the key gets its answer).
 */
async function call(
  client: SoakClient,
  method: string,
  pathAndQuery: string,
  body?: unknown,
  idempotencyKey?: string,
): Promise<{ status: number; json: Json } | undefined> {
  const headers: Record<string, string> = { authorization: `Bearer ${client.apiKey()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
  const noted = (what: string) => {
    // Each change of answer per call is logged once: a step that fails shows what it kept getting.
    const key = `${method} ${pathAndQuery}`;
    if (lastAnswer.get(key) !== what) client.log(`${key}: ${what}`);
    lastAnswer.set(key, what);
  };
  try {
    const response = await fetch(`${client.baseUrl}${pathAndQuery}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.any([client.signal, AbortSignal.timeout(120_000)]),
    });
    const text = await response.text();
    if (response.status >= 400 && !(method === "GET" && response.status === 404))
      noted(`${response.status} ${text.slice(0, 200)}`);
    if (response.status >= 500) return undefined;
    const json = text ? JSON.parse(text) : undefined;
    // Only the keyed request still in flight (`conflict`) is waited out: a final 409 (`name_conflict`,
    // `invalid_state`) also says x-should-retry: false, and is the step's answer.
    if (response.status === 409 && json?.code === "conflict" && response.headers.get("x-should-retry") === "false")
      return undefined;
    return { status: response.status, json };
  } catch (error) {
    noted(`no answer: ${(error as Error).message}`);
    return undefined;
  }
}

const lastAnswer = new Map<string, string>();

/** Calls until a non-retryable answer, or fails the step after STEP_TIMEOUT_MS. */
async function until(
  client: SoakClient,
  what: string,
  attempt: () => Promise<{ status: number; json: Json } | undefined>,
): Promise<{ status: number; json: Json }> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const answer = await attempt();
    if (answer) return answer;
    if (Date.now() > deadline) throw new StepFailed(`${what}: no answer within ${STEP_TIMEOUT_MS} ms`);
    await sleep(RETRY_MS, client.signal);
  }
}

/** Polls `probe` until it returns a value, or fails the step. */
async function waitUntil<T>(client: SoakClient, what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new StepFailed(`${what}: not within ${STEP_TIMEOUT_MS} ms`);
    await sleep(RETRY_MS, client.signal);
  }
}

/** Creates with a name; a 409 on a retry means an earlier attempt won: the resource is then looked up. */
async function createNamed(
  client: SoakClient,
  what: string,
  kind: ResourceKind,
  post: { path: string; body: unknown },
  lookup: () => Promise<Json | undefined>,
): Promise<Json> {
  const key = randomUUID();
  let attempts = 0;
  const answer = await until(client, what, async () => {
    attempts++;
    const result = await call(client, "POST", post.path, post.body, key);
    if (result?.status === 409 && attempts > 1) {
      const existing = await lookup();
      return existing ? { status: 201, json: existing } : undefined;
    }
    return result;
  });
  if (answer.status !== 201) throw new StepFailed(`${what}: ${answer.status} ${JSON.stringify(answer.json)}`);
  client.acknowledged.set(answer.json.id, { kind, deleted: false });
  return answer.json;
}

async function getJson(client: SoakClient, pathAndQuery: string): Promise<Json | undefined> {
  const answer = await call(client, "GET", pathAndQuery);
  return answer?.status === 200 ? answer.json : undefined;
}

async function remove(client: SoakClient, what: string, kind: ResourceKind, pathAndQuery: string, id: string) {
  const answer = await until(client, what, () => call(client, "DELETE", pathAndQuery));
  if (answer.status !== 204 && answer.status !== 404) {
    throw new StepFailed(`${what}: ${answer.status} ${JSON.stringify(answer.json)}`);
  }
  client.acknowledged.set(id, { kind, deleted: true });
}

/** Runs pipeline `index`; resolves with the step it failed at, or undefined when it completed. */
export async function runPipeline(client: SoakClient, run: string, index: number): Promise<string | undefined> {
  const name = `soak-${run}-${index}`;
  let step = "create instance";
  try {
    const source = await createNamed(
      client,
      step,
      "instance",
      { path: "/instances", body: { name, size: "128MB" } },
      () => getJson(client, `/instances/${name}`),
    );
    await client.afterStep();
    step = "wait for the instance to run";
    await waitUntil(client, step, async () =>
      (await getJson(client, `/instances/${source.id}`))?.state === "Running" ? true : undefined,
    );
    await client.afterStep();
    step = "capture a Standby snapshot";
    const snapshotName = `${name}-snap`;
    const snapshot = await createNamed(
      client,
      step,
      "snapshot",
      {
        path: `/instances/${source.id}/snapshots`,
        body: {
          kind: "Standby",
          name: snapshotName,
          compression: { enabled: true, algorithm: "zstd", level: client.compressionLevel },
        },
      },
      async () =>
        ((await getJson(client, `/snapshots?source_instance_id=${source.id}&name=${snapshotName}`)) as Json[])?.[0],
    );
    await client.afterStep();
    step = "wait for compression";
    await waitUntil(client, step, async () => {
      const current = await getJson(client, `/snapshots/${snapshot.id}`);
      if (current?.compression_state === "error")
        throw new StepFailed(`compression failed: ${current.compression_error}`);
      return current?.compression_state === "compressed" ? true : undefined;
    });
    await client.afterStep();
    const elsewhere = index % 2 === 1 ? client.hostIds.find((id) => id !== snapshot.host_id) : undefined;
    step = elsewhere ? `fork on ${elsewhere}` : "fork";
    const forkName = `${name}-fork`;
    const fork = await createNamed(
      client,
      step,
      "instance",
      {
        path: `/snapshots/${snapshot.id}/fork`,
        body: elsewhere ? { name: forkName, host_id: elsewhere } : { name: forkName },
      },
      () => getJson(client, `/instances/${forkName}`),
    );
    await client.afterStep();
    step = "delete the fork";
    await remove(client, step, "instance", `/instances/${fork.id}`, fork.id);
    await client.afterStep();
    step = "delete the snapshot";
    await remove(client, step, "snapshot", `/snapshots/${snapshot.id}`, snapshot.id);
    await client.afterStep();
    return undefined;
  } catch (error) {
    client.log(`pipeline ${index} failed at "${step}": ${(error as Error).message}`);
    return step;
  }
}
