// The dashboard's calls to the API: the key from sessionStorage as a bearer token, and GET /events read with
// fetch streaming (EventSource cannot send an Authorization header), parsed by the eventsource-parser package (served
// from node_modules by api/routes/ui.ts, as the CLI uses it: one SSE parser).
import { EventSourceParserStream } from "./vendor/eventsource-parser/stream.js";

const KEY = "snapfleet-api-key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ? `${body.code}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

/** A JSON call; throws ApiError with the envelope's message on a non-2xx answer. */
export async function api(path, { method = "GET", json, key = session.key } = {}) {
  const headers = { authorization: `Bearer ${key}` };
  if (json !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => undefined));
  return response.status === 204 ? undefined : response.json();
}

/** Follows GET /events until `signal` aborts, resuming after the last position when the stream drops. */
export async function followEvents(query, onEvent, onLive, signal) {
  let lastId;
  while (!signal.aborted) {
    try {
      const headers = { authorization: `Bearer ${session.key}` };
      if (lastId) headers["last-event-id"] = lastId;
      const response = await fetch(`/events?${new URLSearchParams(query)}`, { headers, signal });
      if (!response.ok) throw new ApiError(response.status);
      onLive(true);
      const messages = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
      for await (const message of messages) {
        if (message.id) lastId = message.id;
        if ((message.event ?? "message") === "message") onEvent(JSON.parse(message.data));
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 401) throw error;
    }
    onLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}
