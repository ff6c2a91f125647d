// GET /openapi.json (OpenAPI 3.1, generated from the route schemas) and GET /docs (a page rendering it).
import type { App } from "../app.ts";

export const OPENAPI_INFO = {
  title: "Snapfleet API",
  version: "0.1.0",
  description:
    "VM snapshots: capture, compress, fork and restore. Wire-compatible with the Hypeman snapshots API. " +
    "Every route except /health, /openapi.json and /docs takes `Authorization: Bearer <api key>`. " +
    "Every POST takes an optional `Idempotency-Key` header: a retry with the same key and body gets the first " +
    "answer again (`Idempotent-Replayed: true`); 5xx answers are not kept.",
};

export function registerDocsRoutes(app: App): void {
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: OPENAPI_INFO,
    security: [{ bearerAuth: [] }],
  });
  app.get("/docs", (c) => {
    const document = app.getOpenAPI31Document({ openapi: "3.1.0", info: OPENAPI_INFO });
    return c.html(renderDocsPage(document as unknown as OpenApiDocument));
  });
}

interface OpenApiOperation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: Array<{ name: string; in: string; required?: boolean; description?: string }>;
  requestBody?: unknown;
  responses?: Record<string, { description?: string }>;
}

interface OpenApiDocument {
  info: { title: string; version: string; description?: string };
  paths?: Record<string, Record<string, OpenApiOperation>>;
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

/** A self-contained page (no scripts, no CDN): works on machines without internet access. */
export function renderDocsPage(document: OpenApiDocument): string {
  const operations = Object.entries(document.paths ?? {}).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  );
  const sections = operations
    .map(({ path, method, operation }) => {
      const parameters = (operation.parameters ?? [])
        .map(
          (p) => `<li><code>${escapeHtml(p.name)}</code> (${escapeHtml(p.in)}${p.required ? ", required" : ""})</li>`,
        )
        .join("");
      const responses = Object.entries(operation.responses ?? {})
        .map(([status, response]) => `<li><b>${status}</b> ${escapeHtml(response.description ?? "")}</li>`)
        .join("");
      const auth = operation.security && operation.security.length === 0 ? "no auth" : "bearer auth";
      return `<section><h2><span class="m ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h2>
<p>${escapeHtml(operation.summary ?? "")} <small>(${auth})</small></p>
${operation.description ? `<p>${escapeHtml(operation.description)}</p>` : ""}
${parameters ? `<h3>Parameters</h3><ul>${parameters}</ul>` : ""}
<h3>Responses</h3><ul>${responses}</ul></section>`;
    })
    .join("\n");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(document.info.title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
section{border-top:1px solid #ddd;padding:.5rem 0}h2{font-size:1.1rem}.m{display:inline-block;min-width:4.5rem;
padding:.1rem .4rem;border-radius:4px;color:#fff;background:#555;font-size:.85rem;text-align:center}
.get{background:#2b7}.post{background:#27b}.delete{background:#c33}.patch{background:#b72}</style></head>
<body><h1>${escapeHtml(document.info.title)} <small>${escapeHtml(document.info.version)}</small></h1>
<p>${escapeHtml(document.info.description ?? "")}</p><p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1)</p>
${sections}</body></html>`;
}
