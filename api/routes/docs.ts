// GET /openapi.json (OpenAPI 3.1, generated from the route schemas) and GET /docs: Swagger UI from the
// swagger-ui-dist package, served by the API itself (no CDN: the page works on machines without internet access).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { App } from "../deps.ts";

/** The Hypeman API version whose contract we match, reported as `server.api_version` by GET /capabilities. */
export const REFERENCE_API_VERSION = "0.3.0";

export const OPENAPI_INFO = {
  title: "Snapfleet API",
  version: "0.1.0",
  description:
    "VM snapshots: capture, compress, fork and restore. Wire-compatible with the Hypeman snapshots API. " +
    "Every route except /health, /openapi.json and /docs takes `Authorization: Bearer <api key>`. " +
    "Every POST takes an optional `Idempotency-Key` header: a retry with the same key and body gets the first " +
    "answer again (`Idempotent-Replayed: true`); a 504 keeps the key and the request runs on, so a retry gets 409 " +
    "until it is done and then its answer; other 5xx answers are not kept. " +
    `Matches Hypeman API ${REFERENCE_API_VERSION} where it overlaps (GET /capabilities reports that version); this ` +
    "document's own version is ours. Where we differ on purpose: `POST /instances` defaults to `size` 256MB, " +
    "`vcpus` 1 and `overlay_size` 256MB (the reference: 1GB, 2, 10GB), sized for small hosts; its fields we do not " +
    "model (`env`, `cmd`, `network`, `volumes`, …) are ignored, not refused.",
};

const SWAGGER_DIR = path.dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));

/** The page's own files: Swagger UI's bundle and stylesheet, and our initializer. */
const ASSETS = {
  "swagger-ui-bundle.js": { type: "text/javascript; charset=utf-8", file: "swagger-ui-bundle.js" },
  "swagger-ui.css": { type: "text/css; charset=utf-8", file: "swagger-ui.css" },
  "favicon-32x32.png": { type: "image/png", file: "favicon-32x32.png" },
} as const;

// validatorUrl null: Swagger UI would otherwise send the document to an online validator.
const INITIALIZER = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
});
`;

const PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${OPENAPI_INFO.title}</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>`;

/** Paths served without a bearer key. */
export const DOCS_PUBLIC_PATHS = [
  "/openapi.json",
  "/docs",
  "/docs/init.js",
  ...Object.keys(ASSETS).map((name) => `/docs/${name}`),
];

export function registerDocsRoutes(app: App): void {
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: OPENAPI_INFO,
    security: [{ bearerAuth: [] }],
  });
  app.get("/docs", (c) => c.html(PAGE));
  app.get("/docs/init.js", (c) => c.body(INITIALIZER, 200, { "content-type": "text/javascript; charset=utf-8" }));
  for (const [name, asset] of Object.entries(ASSETS)) {
    const content = readFileSync(path.join(SWAGGER_DIR, asset.file));
    app.get(`/docs/${name}`, (c) =>
      c.body(content, 200, { "content-type": asset.type, "cache-control": "public, max-age=3600" }),
    );
  }
}
