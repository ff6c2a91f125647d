// The app factory: validation hook, error envelope, auth, body limit, Idempotency-Key, OpenAPI document and docs page.
import type { IncomingMessage } from "node:http";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { ApiError, type ErrorStatus } from "../shared/errors.ts";
import { PROCESS_ID } from "../shared/locks.ts";
import type { Logger } from "../shared/logger.ts";
import type { App, AppDeps } from "./deps.ts";
import { bearerAuth } from "./middleware/auth.ts";
import { allowEarlyAnswers } from "./middleware/idempotency/detach.ts";
import { idempotency } from "./middleware/idempotency/index.ts";
import { pageSecurityHeaders, THIRD_PARTY_PAGE_CSP, UI_CSP } from "./middleware/page-headers.ts";
import { requestIds, requestLog } from "./middleware/request-log.ts";
import { bodyLeftUnread, dropRestOfBody } from "./middleware/unread-body.ts";
import { apiProcessAlive } from "./process-alive.ts";
import { registerCapabilityRoutes } from "./routes/capabilities.ts";
import { registerDeadLetterRoutes } from "./routes/dead-letters.ts";
import { DOCS_PUBLIC_PATHS, registerDocsRoutes } from "./routes/docs.ts";
import { registerEventRoutes } from "./routes/events.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerHostRoutes } from "./routes/hosts.ts";
import { registerInstanceForkRoutes } from "./routes/instance-fork.ts";
import { registerInstanceWaitRoutes } from "./routes/instance-wait.ts";
import { registerInstanceRoutes } from "./routes/instances.ts";
import { registerMetricsRoutes } from "./routes/metrics.ts";
import { registerQueueRoutes } from "./routes/queues.ts";
import { registerSnapshotCompressRoutes } from "./routes/snapshot-compress.ts";
import { registerSnapshotScheduleRoutes } from "./routes/snapshot-schedule.ts";
import { IMPORT_SNAPSHOT_PATH, registerSnapshotTransferRoutes } from "./routes/snapshot-transfer.ts";
import { registerSnapshotRoutes } from "./routes/snapshots.ts";
import { BOARD_COOKIE, BOARD_PATH, isPublicUiPath, registerUiRoutes } from "./routes/ui.ts";
import { registerWebhookRoutes } from "./routes/webhooks.ts";
import { registerWebhookDeliveryRoutes } from "./routes/webhooks-deliveries.ts";
import { validationError } from "./validation.ts";

const PUBLIC_PATHS = new Set(["/health", ...DOCS_PUBLIC_PATHS]);
const isPublic = (path: string) => PUBLIC_PATHS.has(path) || isPublicUiPath(path);
/** Bodies of any size, streamed on to a host rather than buffered (no body limit, no idempotency replay). */
const UNLIMITED_BODY_PATHS = new Set([IMPORT_SNAPSHOT_PATH]);

export function createApp(deps: AppDeps): App {
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error.issues);
    },
  });

  app.onError(async (error, c) => {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const unread = bodyLeftUnread(incoming, c.req.raw.headers) && !(incoming && (await dropRestOfBody(incoming)));
    return respondWithError(error, c, deps.log, unread);
  });
  app.notFound((c) =>
    c.json(new ApiError("not_found", `no route for ${c.req.method} ${c.req.path}`).toEnvelope(), 404),
  );

  app.use("*", requestIds());
  app.use("*", requestLog(deps.log, deps.metrics));
  const uiHeaders = pageSecurityHeaders(UI_CSP);
  const thirdPartyPageHeaders = pageSecurityHeaders(THIRD_PARTY_PAGE_CSP);
  app.use("/ui/*", (c, next) => (c.req.path.startsWith(BOARD_PATH) ? thirdPartyPageHeaders : uiHeaders)(c, next));
  app.use("/docs/*", thirdPartyPageHeaders);
  app.use(
    "*",
    bearerAuth(deps.apiKeys, {
      isPublic,
      readOnlyKeys: deps.readOnlyApiKeys,
      cookie: { name: BOARD_COOKIE, pathPrefix: BOARD_PATH },
    }),
  );
  const limitBody = bodyLimit({
    maxSize: deps.bodyLimitBytes,
    onError: () => {
      throw new ApiError("invalid_request", `request body exceeds ${deps.bodyLimitBytes} bytes`, { status: 413 });
    },
  });
  app.use("*", (c, next) => (UNLIMITED_BODY_PATHS.has(c.req.path) ? next() : limitBody(c, next)));
  // Streamed bodies are not fingerprinted (that would buffer them): an import with an Idempotency-Key runs as usual.
  const replayIdempotent = idempotency({
    db: deps.db,
    ttlMs: deps.idempotencyTtlMs,
    answerWithinMs: deps.jobResultTimeoutMs,
    detachedWaitMs: deps.idempotencyDetachedWaitMs,
    owner: PROCESS_ID,
    ownerAlive: (owner) => apiProcessAlive(deps, owner),
  });
  app.use("*", (c, next) => (UNLIMITED_BODY_PATHS.has(c.req.path) ? next() : replayIdempotent(c, next)));

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description:
      "An API key from API_KEYS (or the generated data/api-key file). A key from API_READ_KEYS may only GET and HEAD, " +
      "exports excepted (403 forbidden otherwise).",
  });

  registerHealthRoutes(app, deps);
  registerHostRoutes(app, deps);
  registerCapabilityRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerWebhookDeliveryRoutes(app, deps);
  registerEventRoutes(app, deps);
  registerDeadLetterRoutes(app, deps);
  registerInstanceRoutes(app, deps);
  registerInstanceWaitRoutes(app, deps);
  registerInstanceForkRoutes(app, deps);
  registerSnapshotTransferRoutes(app, deps);
  registerSnapshotRoutes(app, deps);
  registerSnapshotCompressRoutes(app, deps);
  registerSnapshotScheduleRoutes(app, deps);
  registerMetricsRoutes(app, deps);
  registerQueueRoutes(app, deps);
  registerUiRoutes(app, deps);
  registerDocsRoutes(app);
  app.fetch = allowEarlyAnswers(app.fetch);
  return app;
}

/** The error envelope; `bodyUnread`: the request body could not be read to its end, so the connection closes. */
function respondWithError(error: Error, c: Context, log: Logger, bodyUnread: boolean): Response {
  const apiError = toApiError(error);
  if (apiError.code === "internal_error") {
    log.error({ err: error, method: c.req.method, path: c.req.path }, "request failed");
  }
  if (!apiError.retryable) c.header("x-should-retry", "false");
  if (bodyUnread) c.header("connection", "close");
  return c.json(apiError.toEnvelope(), apiError.status);
}

function toApiError(error: Error): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof HTTPException) {
    const status = error.status as number;
    if (status === 400) return new ApiError("invalid_request", error.message || "malformed request", { cause: error });
    if (status === 401) return new ApiError("unauthorized", error.message || "unauthorized", { cause: error });
    if (status === 404) return new ApiError("not_found", error.message || "not found", { cause: error });
    if (status === 413) return new ApiError("invalid_request", "request body too large", { status: 413 });
    if (status === 415) {
      const message = "the request body must be JSON: send Content-Type: application/json";
      return new ApiError("invalid_request", message, { status: 415, cause: error });
    }
    return new ApiError("internal_error", "internal error", { cause: error });
  }
  return new ApiError("internal_error", "internal error", { cause: error, status: 500 as ErrorStatus });
}
