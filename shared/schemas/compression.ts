// Snapshot compression config and the effective-policy rule of the contract.
// The algorithms and level ranges are the codec's own (shared/codec/options.ts): one source for both.
import { COMPRESSION_ALGORITHMS, type CompressionAlgorithm, LEVELS_BY_ALGORITHM } from "../codec/options.ts";
import { z } from "../zod.ts";

export { COMPRESSION_ALGORITHMS, type CompressionAlgorithm };

// When `enabled` is false nothing else is checked (the contract): algorithm and level are validated in the refine.
export const COMPRESSION_CONFIG = z
  .object({
    enabled: z.boolean().openapi({ description: "Enable snapshot memory compression" }),
    algorithm: z
      .string()
      .optional()
      .openapi({
        enum: [...COMPRESSION_ALGORITHMS],
        description: "Compression algorithm (defaults to zstd when enabled). Ignored when enabled is false.",
      }),
    level: z
      .number()
      .optional()
      .openapi({
        minimum: 0,
        maximum: 19,
        description:
          "Compression level. Allowed ranges are zstd=1-19 and lz4=0-9. When omitted, zstd defaults to 1 and lz4 " +
          "defaults to 0. Ignored when enabled is false. lz4 levels 0-2 are its fast mode (as `lz4 -1`), 3-9 " +
          "are LZ4HC: slower, smaller; on a host whose codec runs its portable packages backend every lz4 level " +
          "is the fast mode.",
      }),
  })
  .superRefine((config, context) => {
    if (!config.enabled) return;
    const algorithm = (config.algorithm ?? "zstd") as CompressionAlgorithm;
    if (!COMPRESSION_ALGORITHMS.includes(algorithm)) {
      context.addIssue({ code: "custom", path: ["algorithm"], message: "algorithm must be zstd or lz4" });
      return;
    }
    if (config.level === undefined) return;
    const range = LEVELS_BY_ALGORITHM[algorithm];
    if (!Number.isInteger(config.level) || config.level < range.min || config.level > range.max) {
      context.addIssue({
        code: "custom",
        path: ["level"],
        message: `${algorithm} level must be an integer between ${range.min} and ${range.max}`,
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
  const algorithm = (config.algorithm ?? "zstd") as CompressionAlgorithm;
  return { enabled: true, algorithm, level: config.level ?? LEVELS_BY_ALGORITHM[algorithm].default };
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
