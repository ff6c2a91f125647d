import { describe, expect, it } from "vitest";
import { readSse } from "./sse.ts";

const streamOf = (...chunks: string[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      controller.close();
    },
  });

describe("readSse", () => {
  it("reads messages split across chunks, skips comments and joins multi-line data", async () => {
    const body = streamOf(
      "event: ready\nid: 0-0\nda",
      'ta: {"position":"0-0"}\n\n: heartbeat\n\n',
      "id: 1-0\r\ndata: line one\r\ndata: line two\r\n\r\n",
    );
    const messages = [];
    for await (const message of readSse(body)) messages.push(message);
    expect(messages).toEqual([
      { event: "ready", id: "0-0", data: '{"position":"0-0"}' },
      { event: "message", id: "1-0", data: "line one\nline two" },
    ]);
  });
});
