// The dashboard's calls to the API: the key from sessionStorage as a bearer token, and GET /events read with
// fetch streaming (EventSource cannot send an Authorization header).
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
      for await (const message of sseMessages(response.body)) {
        if (message.id) lastId = message.id;
        if (message.event === "message") onEvent(JSON.parse(message.data));
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 401) throw error;
    }
    onLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id") message.id = text;
      }
      if (message.data.length) yield { ...message, data: message.data.join("\n") };
      end = buffer.indexOf("\n\n");
    }
  }
}
