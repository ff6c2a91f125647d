// A real webhook receiver on loopback for tests and the benchmark: records every request as received
// (raw body and headers, for standardwebhooks verification) and answers as the test says.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedRequest {
  headers: IncomingHttpHeaders;
  body: string;
  receivedAt: number;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
}

export interface WebhookReceiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  answer: (request: ReceivedRequest) => Answer;
  /** Stops listening (connections are refused) until `listen` again, on the same port. */
  stop(): Promise<void>;
  listen(): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(
  answer: (request: ReceivedRequest) => Answer = () => ({ status: 204 }),
  port = 0,
): Promise<WebhookReceiver> {
  let server: Server | undefined;
  const receiver: WebhookReceiver = {
    url: "",
    port,
    requests: [],
    answer,
    async listen() {
      server = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", () => {
          const received = {
            headers: request.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            receivedAt: Date.now(),
          };
          receiver.requests.push(received);
          const { status, headers } = receiver.answer(received);
          response.writeHead(status, headers).end();
        });
      });
      await new Promise<void>((resolve) => server!.listen(receiver.port, "127.0.0.1", resolve));
      receiver.port = (server.address() as AddressInfo).port;
      receiver.url = `http://127.0.0.1:${receiver.port}/hooks`;
    },
    async stop() {
      const closing = server;
      server = undefined;
      if (!closing) return;
      await new Promise<void>((resolve) => {
        closing.close(() => resolve());
        closing.closeAllConnections();
      });
    },
    close: () => receiver.stop(),
  };
  await receiver.listen();
  return receiver;
}

/** Verifies a received request with the Standard Webhooks library and returns its parsed body (throws if invalid). */
export function verifyReceived(
  request: ReceivedRequest,
  secret: string,
): { type: string; timestamp: string; data: unknown } {
  return new Webhook(secret).verify(request.body, request.headers as Record<string, string>) as {
    type: string;
    timestamp: string;
    data: unknown;
  };
}
