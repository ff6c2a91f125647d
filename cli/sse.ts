// A Server-Sent Events reader over fetch (Node's fetch can send the bearer header, which EventSource cannot).
// The parsing is eventsource-parser's (the spec's line endings, fields and comments); this only turns its
// callbacks into an async iterator.
import { createParser } from "eventsource-parser";

export interface SseMessage {
  event: string;
  id?: string;
  data: string;
}

/** The stream's messages in order; comments (heartbeats) are skipped. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const parsed: SseMessage[] = [];
  const parser = createParser({
    onEvent: ({ event, id, data }) => {
      parsed.push({ event: event ?? "message", ...(id === undefined ? {} : { id }), data });
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    yield* parsed.splice(0);
  }
}
