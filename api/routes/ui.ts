// The dashboard at /ui: plain ES modules from the project's ui/ folder (no build step, no CDN), a sign-in that
// also sets an HttpOnly cookie for Bull Board, and Bull Board itself at /ui/queues behind that same key.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { HonoAdapter } from "@bull-board/hono";
import { serveStatic } from "@hono/node-server/serve-static";
import { deleteCookie, setCookie } from "hono/cookie";
import { bearerToken } from "../../shared/bearer.ts";
import type { App, AppDeps } from "../deps.ts";
import { knownQueues } from "../metrics/collect.ts";
import { BOARD_SESSION_TTL_SECONDS, issueBoardSession } from "../middleware/board-session.ts";

const UI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../ui");
/** The SSE parser the page imports: eventsource-parser's own ES modules (the CLI parses with the same package). */
const SSE_PARSER_DIR = path.join(
  path.dirname(createRequire(import.meta.url).resolve("eventsource-parser/package.json")),
  "dist",
);
export const BOARD_PATH = "/ui/queues";
export const BOARD_COOKIE = "snapfleet_board";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** The page and its files need no key: everything they show comes from the API with the bearer key. */
export const isPublicUiPath = (requestPath: string) =>
  requestPath === "/ui" ||
  (requestPath.startsWith("/ui/") && !requestPath.startsWith(BOARD_PATH) && requestPath !== "/ui/session");

export function registerUiRoutes(app: App, deps: AppDeps): void {
  const files = new Map(
    readdirSync(UI_DIR).map((name) => [
      name,
      { body: readFileSync(path.join(UI_DIR, name)), type: TYPES[path.extname(name)] },
    ]),
  );
  app.get("/ui", (c) => c.body(files.get("index.html")!.body, 200, { "content-type": TYPES[".html"]! }));
  const parser = new Map(
    ["index.js", "stream.js"].map((name) => [name, readFileSync(path.join(SSE_PARSER_DIR, name))]),
  );
  app.get("/ui/vendor/eventsource-parser/:file{(index|stream)\\.js}", (c) =>
    c.body(parser.get(c.req.param("file"))!, 200, { "content-type": TYPES[".js"]! }),
  );
  app.get("/ui/:file{[a-z0-9-]+\\.(js|css)}", (c) => {
    const file = files.get(c.req.param("file"));
    if (!file) return c.notFound();
    return c.body(file.body, 200, { "content-type": file.type ?? "application/octet-stream" });
  });

  // Reached with the bearer key: hands Bull Board's page a signed, expiring session as a strict, HttpOnly cookie.
  app.post("/ui/session", (c) => {
    const key = bearerToken(c.req.header("authorization"))!;
    setCookie(c, BOARD_COOKIE, issueBoardSession(key), {
      path: BOARD_PATH,
      httpOnly: true,
      sameSite: "Strict",
      maxAge: BOARD_SESSION_TTL_SECONDS,
    });
    return c.body(null, 204);
  });
  app.delete("/ui/session", (c) => {
    deleteCookie(c, BOARD_COOKIE, { path: BOARD_PATH });
    return c.body(null, 204);
  });

  registerBullBoard(app, deps);
}

function registerBullBoard(app: App, deps: AppDeps): void {
  const serverAdapter = new HonoAdapter(serveStatic).setBasePath(BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: "Snapfleet queues" } },
  });
  // Queues come and go with hosts: the list is read again whenever the board's page or API is asked (its static
  // assets need none), and replaced only when it changed. Unreadable (Redis down), the board keeps the last one.
  let shown = "";
  app.use(`${BOARD_PATH}/*`, async (c, next) => {
    if (!c.req.path.startsWith(`${BOARD_PATH}/static/`) && deps.redis.status === "ready") {
      const queues = await knownQueues(deps).catch(() => undefined);
      const names = queues?.map((queue) => queue.name).join("\n");
      if (queues && names !== shown) {
        board.replaceQueues(
          queues.map((queue) => new BullMQAdapter(deps.jobs.queue(queue.name), { readOnlyMode: false })),
        );
        shown = names!;
      }
    }
    await next();
    // Bull Board's page links a web font from a CDN: drop it, the page falls back to the system font.
    if (c.res.headers.get("content-type")?.startsWith("text/html")) {
      const html = (await c.res.text()).replace(/<link [^>]*fonts\.googleapis\.com[^>]*>/g, "");
      c.res = new Response(html, { status: c.res.status, headers: c.res.headers });
    }
  });
  app.route(BOARD_PATH, serverAdapter.registerPlugin());
}
