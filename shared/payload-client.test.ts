// The payload client's idle bound against a real socket that accepts a request and then says nothing: the call fails
// with a clear message instead of holding the API request (and its client) for ever.
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PayloadClient } from "./payload-client.ts";

let silent: Server;
let url: string;

beforeAll(async () => {
  silent = createServer((socket) => socket.resume()); // reads the request, never answers
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
  const address = silent.address() as { port: number };
  url = `http://127.0.0.1:${address.port}`;
});
afterAll(() => new Promise<void>((resolve) => silent.close(() => resolve())));

it("fails a call to a host that accepted it and then went silent, naming the bound", async () => {
  const client = new PayloadClient({ secret: "payload-client-test-secret-0123", idleMs: 300 });
  await expect(client.request({ hostId: "host-a", url }, "/snapshots/x/export")).rejects.toThrow(
    /sent nothing for 300 ms \(HTTP_IDLE_TIMEOUT_MS\)/,
  );
});
