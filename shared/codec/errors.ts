// The codec's one error type: the message names the step or the chunk that failed.

/** invalid_argument: rejected before any work; io: a file operation failed; corrupt: the input is damaged. */
export type CodecErrorCode = "invalid_argument" | "io" | "corrupt";

export class CodecError extends Error {
  readonly code: CodecErrorCode;
  readonly chunk: number | undefined;

  constructor(code: CodecErrorCode, message: string, options: { cause?: unknown; chunk?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = "CodecError";
    this.code = code;
    this.chunk = options.chunk;
  }
}

/** "ENOSPC: no space left on device, write" → "no space left on device". */
export function describeSystemError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const match = /^[A-Z0-9_]+: (.*?)(?:, [^,]*)?$/.exec(error.message);
  return match?.[1] ?? error.message;
}

/** Runs one I/O step; a failure becomes `<step>: <reason>`, e.g. `write compressed stream: no space left on device`. */
export async function ioStep<T>(step: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof CodecError) throw error;
    throw new CodecError("io", `${step}: ${describeSystemError(error)}`, { cause: error });
  }
}
