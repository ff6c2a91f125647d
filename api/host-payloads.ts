// Calls to a host's payload server (workers/host/payload-server.ts): the API never reads a host's disk itself.
import { ApiError } from "../shared/errors.ts";
import { parseErrorEnvelope } from "../shared/jobs/producer.ts";
import { type PayloadCall, PayloadUrlRefusedError } from "../shared/payload-client.ts";
import { assertHostOnline } from "./commands.ts";
import type { AppDeps } from "./deps.ts";

/** Sends a request to an online host's payload server; a non-2xx answer becomes the ApiError the host gave. */
export async function fetchFromHost(deps: AppDeps, hostId: string, path: string, init: PayloadCall = {}) {
  const host = await assertHostOnline(deps, hostId);
  if (!host.payload_url) throw new ApiError("unavailable", `host ${hostId} runs no payload server (an older worker?)`);
  let response: Response;
  try {
    response = await deps.payloads.request({ hostId, url: host.payload_url }, path, init);
  } catch (error) {
    if (error instanceof PayloadUrlRefusedError) throw new ApiError("unavailable", error.message, { cause: error });
    throw new ApiError("unavailable", `host ${hostId}'s payload server did not answer`, { cause: error });
  }
  if (response.ok) return response;
  const envelope = parseErrorEnvelope(await response.text());
  if (!envelope) throw new ApiError("internal_error", `host ${hostId} answered ${response.status} to ${path}`);
  throw new ApiError(envelope.code, envelope.message, { status: response.status as ApiError["status"] });
}
