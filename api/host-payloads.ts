// Calls to a host's payload server (workers/capture/payload-server.ts): the API never reads a host's disk itself.
import { ApiError } from "../shared/errors.ts";
import { payloadToken } from "../shared/fleet-secret.ts";
import { parseErrorEnvelope } from "../shared/jobs/producer.ts";
import { assertHostOnline } from "./commands.ts";
import type { AppDeps } from "./deps.ts";

export interface HostRequest {
  method?: string;
  body?: ReadableStream<Uint8Array> | null;
  headers?: Record<string, string>;
}

/** Sends a request to an online host's payload server; a non-2xx answer becomes the ApiError the host gave. */
export async function fetchFromHost(deps: AppDeps, hostId: string, path: string, init: HostRequest = {}) {
  const host = await assertHostOnline(deps, hostId);
  if (!host.payload_url) throw new ApiError("unavailable", `host ${hostId} runs no payload server (an older worker?)`);
  const secret = await deps.fleetSecret().catch((error: unknown) => {
    throw new ApiError("unavailable", "redis unavailable", { cause: error });
  });
  if (!secret) throw new ApiError("unavailable", "no host has shared the fleet secret yet");
  const token = payloadToken(secret, hostId);
  let response: Response;
  try {
    response = await fetch(`${host.payload_url}${path}`, {
      method: init.method ?? "GET",
      headers: { ...init.headers, authorization: `Bearer ${token}` },
      body: init.body,
      duplex: "half",
    } as RequestInit);
  } catch (error) {
    throw new ApiError("unavailable", `host ${hostId}'s payload server did not answer`, { cause: error });
  }
  if (response.ok) return response;
  const envelope = parseErrorEnvelope(await response.text());
  if (!envelope) throw new ApiError("internal_error", `host ${hostId} answered ${response.status} to ${path}`);
  throw new ApiError(envelope.code, envelope.message, { status: response.status as ApiError["status"] });
}
