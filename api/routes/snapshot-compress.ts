// POST /snapshots/{id}/compress (our extension): compress a snapshot in `none` or `error` again, optionally with a
// new policy. 409 while a compression is queued or running, or once it is compressed.
import { createRoute, z } from "@hono/zod-openapi";
import { ApiError } from "../../shared/errors.ts";
import { COMPRESSION_CONFIG, normalizeCompression } from "../../shared/schemas/compression.ts";
import { SNAPSHOT_SCHEMA } from "../../shared/schemas/snapshot.ts";
import { runHostCommand } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { SNAPSHOT_PATH } from "./params.ts";
import { requireSnapshot } from "./snapshots.ts";

const COMPRESS_SNAPSHOT_BODY = z
  .object({
    compression: COMPRESSION_CONFIG.optional().openapi({
      description: "The policy from now on; default: the snapshot's own if enabled, else zstd at its default level",
    }),
  })
  .openapi("CompressSnapshotRequest");

export const compressSnapshotRoute = createRoute({
  method: "post",
  path: "/snapshots/{snapshotId}/compress",
  summary: "Compress a snapshot again (extension)",
  description:
    "Not part of the Hypeman API. Queues a new compression run for a Standby snapshot whose compression_state is " +
    "none or error (e.g. after a full disk), optionally with a new policy; answers with the snapshot, state none. " +
    "409 invalid_state while one is queued or running, or once compressed.",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    params: SNAPSHOT_PATH,
    body: { content: { "application/json": { schema: COMPRESS_SNAPSHOT_BODY } }, required: false },
  },
  responses: { 202: jsonResponse(SNAPSHOT_SCHEMA, "Compression queued"), ...errorResponses(400, 404, 409, 504) },
});

export function registerSnapshotCompressRoutes(app: App, deps: AppDeps): void {
  app.openapi(compressSnapshotRoute, async (c) => {
    const body = c.req.valid("json") ?? {};
    const snapshot = await requireSnapshot(deps, c.req.valid("param").snapshotId);
    if (snapshot.kind === "Stopped") {
      throw new ApiError(
        "invalid_request",
        "compression applies to Standby snapshots only; a Stopped snapshot is disk only",
      );
    }
    const compression = body.compression
      ? normalizeCompression(body.compression)
      : snapshot.compression.enabled
        ? snapshot.compression
        : normalizeCompression({ enabled: true });
    if (!compression.enabled)
      throw new ApiError("invalid_snapshot_compression", "compression.enabled must be true to compress");
    const result = await runHostCommand(
      deps,
      snapshot.host_id,
      "snapshot.recompress",
      { snapshot_id: snapshot.id, compression },
      `GET /snapshots/${snapshot.id}`,
    );
    return c.json(result.snapshot, 202);
  });
}
