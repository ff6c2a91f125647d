// The one error type of the HTTP contract: a closed set of codes, each with its HTTP status.
import { z } from "./zod.ts";

export const ERROR_CODES = [
  "invalid_request",
  "not_found",
  "conflict",
  "invalid_state",
  "unauthorized",
  "forbidden",
  "not_supported",
  "internal_error",
  "unavailable",
  "insufficient_storage",
  // The reference server's codes for the same failures (kernel/hypeman API 0.3.0).
  "invalid_snapshot_compression",
  "invalid_timeout",
  "name_conflict",
  "ambiguous",
  "insufficient_resources",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Default status of each code; a few call sites pick a more precise status of the same family (413, 415, 504). */
export const STATUS_BY_CODE = {
  invalid_request: 400,
  not_found: 404,
  conflict: 409,
  invalid_state: 409,
  unauthorized: 401,
  forbidden: 403,
  not_supported: 501,
  internal_error: 500,
  unavailable: 503,
  insufficient_storage: 507,
  invalid_snapshot_compression: 400,
  invalid_timeout: 400,
  name_conflict: 409,
  ambiguous: 409,
  insufficient_resources: 409,
} as const satisfies Record<ErrorCode, number>;

export type ErrorStatus = (typeof STATUS_BY_CODE)[ErrorCode] | 413 | 415 | 504;

export const ERROR_ENVELOPE_SCHEMA = z
  .object({
    code: z.enum(ERROR_CODES).openapi({ example: "not_found" }),
    message: z.string().openapi({ example: "snapshot q7z1w7l2af4l8y7q1h7g2m3s not found" }),
  })
  .openapi("Error");

export type ErrorEnvelope = z.infer<typeof ERROR_ENVELOPE_SCHEMA>;

/** 409s that a retry of the same request cannot change: the SDKs, which retry every 409, are told not to. */
const FINAL_CODES: ReadonlySet<ErrorCode> = new Set(["invalid_state", "name_conflict", "ambiguous"]);

export class ApiError extends Error {
  readonly status: ErrorStatus;
  /** False: a retry would not help or could do the work twice (answered with `x-should-retry: false`). */
  readonly retryable: boolean;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: { status?: ErrorStatus; cause?: unknown; retryable?: boolean } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "ApiError";
    this.status = options.status ?? STATUS_BY_CODE[code];
    this.retryable = options.retryable ?? !FINAL_CODES.has(code);
  }

  toEnvelope(): ErrorEnvelope {
    return { code: this.code, message: this.message };
  }
}

export const notFound = (what: string, id: string) => new ApiError("not_found", `${what} ${id} not found`);
export const invalidRequest = (message: string) => new ApiError("invalid_request", message);
export const conflict = (message: string) => new ApiError("conflict", message);
export const invalidState = (message: string) => new ApiError("invalid_state", message);
export const unavailable = (message: string, cause?: unknown) => new ApiError("unavailable", message, { cause });
