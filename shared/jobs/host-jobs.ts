// Jobs carried by a host's own queue: everything that touches that host's VMs.
import { z } from "zod";
import type { JobDefinition } from "./catalog.ts";

export const HOST_JOBS = {
  "host.ping": {
    queue: "host",
    payload: z.object({ sentAt: z.iso.datetime() }),
    result: z.object({ hostId: z.string(), receivedAt: z.iso.datetime() }),
    attempts: 1,
    backoff: { type: "fixed", delayMs: 0 },
    timeoutMs: 5_000,
  },
} as const satisfies Record<string, JobDefinition>;
