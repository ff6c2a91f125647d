// A fleet on one machine: one API process and N worker hosts (each a capture and a compression worker process with
// its own HOST_ID and DATA_DIR), sharing the test Redis under a prefix of their own and one FLEET_SECRET.
import { randomBytes } from "node:crypto";
import { readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PayloadClient, type PayloadTarget } from "../../shared/payload-client.ts";
import { entryCommand } from "../../supervisor/processes.ts";
import { TEST_API_KEY } from "./app.ts";
import { freePort, tempDir, testRedisUrl, uniquePrefix } from "./fixtures.ts";
import { type ServiceProcess, startProcess, waitForLog } from "./processes.ts";
import { removeDataDir, TEST_IMAGES_DIR } from "./service.ts";

export interface FleetHost {
  id: string;
  dataDir: string;
  capture: ServiceProcess;
  compression: ServiceProcess;
  /** Starts the capture worker again (after a stop or kill), with the same id and data dir. */
  restartCapture(): Promise<void>;
  /** Starts a capture worker with this host's id and data dir without waiting for it (it may refuse to start). */
  spawnCapture(): ServiceProcess;
}

export interface FleetOptions {
  /** The test run's Redis by default (benchmarks bring their own). */
  redisUrl?: string;
  /** REDIS_PREFIX; a unique one by default. */
  prefix?: string;
  /** Hand the secret over as FLEET_SECRET_FILE instead of FLEET_SECRET. */
  secretInFile?: boolean;
  /** PEM files: every payload server serves HTTPS with `cert`/`key` (SAN 127.0.0.1), clients trust `ca`. */
  tls?: { ca: string; cert: string; key: string };
  /** More settings for every process (an object store's S3_*, say). */
  env?: Record<string, string>;
}

export interface Fleet {
  baseUrl: string;
  prefix: string;
  /** The file holding the fleet's secret (FLEET_SECRET_FILE when `secretInFile`). */
  secretFile: string;
  hosts: FleetHost[];
  host(id: string): FleetHost;
  /** Signs requests to payload servers as the API and hosts do (the fleet's secret and CA). */
  payloads: PayloadClient;
  /** A host's payload server, as announced in the directory. */
  payloadTarget(hostId: string): Promise<PayloadTarget>;
  api(
    pathAndQuery: string,
    init?: { method?: string; json?: unknown; body?: RequestInit["body"]; headers?: Record<string, string> },
  ): Promise<Response>;
  stop(): Promise<void>;
}

const HOST_LETTERS = "abcdefgh";

export async function startFleet(hostCount = 3, options: FleetOptions = {}): Promise<Fleet> {
  const prefix = options.prefix ?? uniquePrefix("fleet");
  const dirs: Array<{ dir: string; remove: () => void }> = [];
  const secret = randomBytes(32).toString("base64url");
  const secretDir = tempDir("fleet-secret");
  dirs.push(secretDir);
  const secretFile = path.join(secretDir.dir, "fleet-secret");
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const common: Record<string, string> = {
    REDIS_URL: options.redisUrl ?? testRedisUrl(),
    REDIS_PREFIX: prefix,
    LOG_LEVEL: "info",
    SHUTDOWN_TIMEOUT_MS: "5000",
    ...(options.secretInFile ? { FLEET_SECRET_FILE: secretFile } : { FLEET_SECRET: secret }),
    ...(options.tls ? { PAYLOAD_TLS_CA: options.tls.ca } : {}),
    ...options.env,
  };
  const tlsFiles: Record<string, string> = options.tls
    ? { PAYLOAD_TLS_CERT: options.tls.cert, PAYLOAD_TLS_KEY: options.tls.key }
    : {};
  const processes: ServiceProcess[] = [];
  const started = (process: ServiceProcess) => {
    processes.push(process);
    return process;
  };

  const apiDir = tempDir("fleet-api");
  dirs.push(apiDir);
  const port = await freePort();
  const api = started(
    startProcess("api", entryCommand("api/main.ts"), {
      ...common,
      DATA_DIR: apiDir.dir,
      PORT: String(port),
      HOST: "127.0.0.1",
      API_KEYS: TEST_API_KEY,
    }),
  );

  const hosts: FleetHost[] = [];
  for (const letter of HOST_LETTERS.slice(0, hostCount)) {
    const data = tempDir(`fleet-host-${letter}`);
    dirs.push(data);
    symlinkSync(TEST_IMAGES_DIR, path.join(data.dir, "images"));
    const env = {
      ...common,
      DATA_DIR: data.dir,
      HOST_ID: `fleet-${letter}`,
      PAYLOAD_BIND: "127.0.0.1",
      PAYLOAD_ADVERTISE_HOST: "127.0.0.1",
    };
    const startCapture = () =>
      started(
        startProcess(`capture-${letter}`, entryCommand("workers/host/main.ts"), {
          ...env,
          ...tlsFiles,
          QEMU_ACCEL: "tcg",
        }),
      );
    const host: FleetHost = {
      id: env.HOST_ID,
      dataDir: data.dir,
      capture: startCapture(),
      compression: started(startProcess(`compression-${letter}`, entryCommand("workers/compression/main.ts"), env)),
      async restartCapture() {
        host.capture = startCapture();
        await waitForLog(host.capture, "capture worker started");
      },
      spawnCapture: () => startCapture(),
    };
    hosts.push(host);
  }

  const stopAll = async () => {
    await Promise.all(processes.map((process) => process.stop("SIGTERM")));
    for (const dir of dirs) removeDataDir(dir);
  };
  try {
    await waitForLog(api, '"listening"');
    for (const host of hosts) {
      await waitForLog(host.capture, "capture worker started");
      await waitForLog(host.compression, "compression worker started");
    }
  } catch (error) {
    await stopAll(); // a fleet that did not start leaves no process behind
    throw error;
  }

  const baseUrl = `http://127.0.0.1:${port}`;
  const fleet: Fleet = {
    baseUrl,
    prefix,
    secretFile,
    hosts,
    host: (id) => hosts.find((host) => host.id === id)!,
    payloads: new PayloadClient({ secret, ca: options.tls ? readFileSync(options.tls.ca, "utf8") : undefined }),
    async payloadTarget(hostId) {
      const listed = (await (await fleet.api("/hosts")).json()) as Array<{ id: string; payload_url: string }>;
      return { hostId, url: listed.find((host) => host.id === hostId)!.payload_url };
    },
    api(pathAndQuery, init = {}) {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${TEST_API_KEY}`);
      let body = init.body;
      if (init.json !== undefined) {
        headers.set("content-type", "application/json");
        body = JSON.stringify(init.json);
      }
      const method = init.method ?? (body === undefined ? "GET" : "POST");
      return fetch(`${baseUrl}${pathAndQuery}`, { method, headers, body, duplex: "half" } as RequestInit);
    },
    stop: stopAll,
  };
  return fleet;
}
