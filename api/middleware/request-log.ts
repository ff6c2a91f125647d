// One JSON log line and one metrics observation per HTTP request, labelled by the matched route pattern
// (`/snapshots/:snapshotId`, never the raw path). The request id comes from a sane incoming `x-request-id` or is
// generated, and is echoed in the response's `x-request-id` (hono/request-id).
import type { MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import { routePath } from "hono/route";
import type { Logger } from "../../shared/logger.ts";
import type { ApiMetrics } from "../metrics/metrics.ts";

export const REQUEST_ID_HEADER = "x-request-id";
const MAX_REQUEST_ID_LENGTH = 128;

export function requestIds(): MiddlewareHandler {
  return requestId({ headerName: REQUEST_ID_HEADER, limitLength: MAX_REQUEST_ID_LENGTH });
}

/** The route pattern that answered, or "unmatched" when only middleware did (a 404 for an unknown path). */
export function routeLabel(pattern: string): string {
  return pattern === "" || pattern === "*" || pattern === "/*" ? "unmatched" : pattern;
}

export function requestLog(log: Logger, metrics: ApiMetrics): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const labels = { method: c.req.method, route: routeLabel(routePath(c, -1)), status: String(c.res.status) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, seconds);
    const line = {
      req_id: c.get("requestId" as never) as string,
      method: labels.method,
      path: c.req.path,
      route: labels.route,
      status: c.res.status,
      ms: Math.round(seconds * 10_000) / 10,
    };
    if (c.res.status >= 500) log.warn(line, "request");
    else log.info(line, "request");
  };
}
