// Handlers of the compression queue, keyed by job name.
import type { JobHandlers } from "../../shared/jobs/worker.ts";

export interface CompressionHandlerDeps {
  dataDir: string;
}

export function createCompressionHandlers(_deps: CompressionHandlerDeps): JobHandlers<never> {
  return {};
}
