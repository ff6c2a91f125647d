// The API process: validate config, start the runtime (read model, Redis, projector, webhooks), serve HTTP,
// stop cleanly.
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { loadConfigOrExit } from "../shared/config.ts";
import { applyStreamTimeouts, streamServerOptions } from "../shared/http-timeouts.ts";
import { createLogger } from "../shared/logger.ts";
import { onShutdownSignal } from "../shared/shutdown.ts";
import { resolveApiKeys } from "./api-keys.ts";
import { startApiRuntime } from "./runtime.ts";

const REDIS_READY_WAIT_MS = 5_000;

const config = loadConfigOrExit();
const log = createLogger("api", config.LOG_LEVEL);
if (!config.REDIS_URL) {
  log.fatal("REDIS_URL is not set: start the whole service with `npm start`, which runs a private Redis");
  process.exit(78);
}

const { keys, generatedFile } = resolveApiKeys(config.API_KEYS, config.DATA_DIR);
if (generatedFile) {
  log.info({ file: generatedFile }, `no API_KEYS configured: using the generated key in ${generatedFile}`);
}

const runtime = await startApiRuntime(config, log, {
  apiKeys: keys,
  redisReadyWaitMs: REDIS_READY_WAIT_MS,
  projector: true,
  webhookPipeline: true,
  maintenance: true,
  schedules: true,
});

const timeouts = { idleMs: config.HTTP_IDLE_TIMEOUT_MS, headersMs: config.HTTP_HEADERS_TIMEOUT_MS };
const server = serve(
  {
    fetch: runtime.app.fetch,
    port: config.PORT,
    hostname: config.HOST,
    serverOptions: streamServerOptions(timeouts),
  },
  (info) => log.info({ port: info.port, host: config.HOST }, "listening"),
);
applyStreamTimeouts(server as Server, timeouts);

onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

async function stopProcess(): Promise<void> {
  await runtime.closeEventStreams(); // live event streams would otherwise hold the server open
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    // Keep-alive sockets would hold close() open until they idle out.
    (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
  await runtime.stop();
}
