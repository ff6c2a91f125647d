// Snapshot compression config and the effective-policy rule of the contract.
import { z } from "../zod.ts";

export const COMPRESSION_ALGORITHMS = ["zstd", "lz4"] as const;
export type CompressionAlgorithm = (typeof COMPRESSION_ALGORITHMS)[number];

export const COMPRESSION_LEVELS = {
  zstd: { min: 1, max: 19, default: 1 },
  // lz4-napi wraps lz4_flex, which has one speed: levels 0-9 are accepted and recorded, all compress alike.
  lz4: { min: 0, max: 9, default: 0 },
} as const satisfies Record<CompressionAlgorithm, { min: number; max: number; default: number }>;

export const COMPRESSION_CONFIG = z
  .object({
    enabled: z.boolean().openapi({ description: "Enable snapshot memory compression" }),
    algorithm: z.enum(COMPRESSION_ALGORITHMS).optional().openapi({
      description: "Compression algorithm (defaults to zstd when enabled). Ignored when enabled is false.",
    }),
    level: z
      .number()
      .int()
      .min(0)
      .max(19)
      .optional()
      .openapi({
        description:
          "Compression level. Allowed ranges are zstd=1-19 and lz4=0-9. When omitted, zstd defaults to 1 and lz4 " +
          "defaults to 0. Ignored when enabled is false. lz4 compresses at one speed here: its level is recorded but " +
          "does not change the output.",
      }),
  })
  .superRefine((config, context) => {
    if (!config.enabled || config.level === undefined) return;
    const range = COMPRESSION_LEVELS[config.algorithm ?? "zstd"];
    if (config.level < range.min || config.level > range.max) {
      context.addIssue({
        code: "custom",
        path: ["level"],
        message: `${config.algorithm ?? "zstd"} level must be between ${range.min} and ${range.max}`,
      });
    }
  })
  .openapi("SnapshotCompressionConfig");

export type CompressionConfig = z.infer<typeof COMPRESSION_CONFIG>;

export interface EffectiveCompression {
  enabled: boolean;
  algorithm?: CompressionAlgorithm;
  level?: number;
}

/** Fills algorithm and level for an enabled config; a disabled one is just `{enabled: false}`. */
export function normalizeCompression(config: CompressionConfig): EffectiveCompression {
  if (!config.enabled) return { enabled: false };
  const algorithm = config.algorithm ?? "zstd";
  return { enabled: true, algorithm, level: config.level ?? COMPRESSION_LEVELS[algorithm].default };
}

/** The first config set among request → instance policy → server default; an explicit disable wins where it is set. */
export function resolveCompression(...candidates: Array<CompressionConfig | undefined | null>): EffectiveCompression {
  const first = candidates.find((candidate) => candidate != null);
  return first ? normalizeCompression(first) : { enabled: false };
}

/** The server default from config: "none", "zstd", "lz4" or "zstd:3". */
export function parseCompressionDefault(text: string): CompressionConfig {
  const [algorithm, level] = text.split(":");
  if (algorithm === "none") return { enabled: false };
  return COMPRESSION_CONFIG.parse({
    enabled: true,
    algorithm,
    level: level === undefined ? undefined : Number(level),
  });
}
