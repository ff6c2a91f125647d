// Child process of bench/api.ts: the bare server. A node:http server with nothing else that answers every URL the
// read load asks for with the bytes (status, type, cursor header, body) the API answered for it, recorded in the
// bench's process. It runs in a process of its own, as the API does, and takes the same reads at the same moments
// (bench/lib/api-load.ts sends each read to both), so the ratio of the two p99s is the API's own cost under the load.
// Takes its answers over IPC (advanced serialization: bodies as Buffers), answers with its port, stops on "stop".
import { fork } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface RecordedAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface BareServerSetup {
  apiKey: string;
  answers: Array<[url: string, answer: RecordedAnswer]>;
}

/** Starts the bare server's process, serving `answers` to requests that bear `apiKey`; resolves once it listens. */
export async function startBareServer(apiKey: string, answers: Array<[string, RecordedAnswer]>) {
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ["--import", "tsx"],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const listening = new Promise<{ port: number }>((resolve, reject) => {
    child.once("message", resolve);
    void exited.then(() => reject(new Error("the bare server exited before it listened")));
  });
  child.send({ apiKey, answers } satisfies BareServerSetup);
  const { port } = await listening;
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null) child.send("stop");
      await exited;
    },
  };
}

const [, entry] = process.argv;
if (entry && import.meta.url === pathToFileURL(entry).href) {
  process.once("message", (setup: BareServerSetup) => {
    const answers = new Map(setup.answers.map(([url, answer]) => [url, { ...answer, body: Buffer.from(answer.body) }]));
    const authorization = `Bearer ${setup.apiKey}`;
    const server = createServer((incoming, response) => {
      const answer = incoming.headers.authorization === authorization ? answers.get(incoming.url ?? "") : undefined;
      if (!answer) return void response.writeHead(404).end();
      response.writeHead(answer.status, { ...answer.headers, "content-length": answer.body.length }).end(answer.body);
    });
    server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
    process.once("message", () => {
      server.close(() => process.exit(0));
      server.closeAllConnections();
    });
  });
}
