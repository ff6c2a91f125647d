// Export and import of snapshots as portable archives (shared/snapshots/archive.ts). The bytes stay on hosts: export
// streams them from the owning host's payload server into the archive; import streams the request body on to the
// chosen host, which verifies everything before the snapshot exists.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { createRoute, z } from "@hono/zod-openapi";
import { type Pack, pack } from "tar-stream";
import { newId } from "../../shared/ids.ts";
import { HOST_ID } from "../../shared/schemas/common.ts";
import { SNAPSHOT_SCHEMA, type Snapshot } from "../../shared/schemas/snapshot.ts";
import {
  ARCHIVE_FORMAT,
  ARCHIVE_MANIFEST_ENTRY,
  ARCHIVE_RECORD_ENTRY,
  type ArchiveManifest,
  EXPORT_LISTING,
} from "../../shared/snapshots/archive.ts";
import { waitForReadModel } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { fetchFromHost } from "../host-payloads.ts";
import { presentSnapshot } from "../host-status.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { pickHost } from "./instances.ts";
import { SNAPSHOT_PATH } from "./params.ts";
import { requireSnapshot } from "./snapshots.ts";

export const IMPORT_SNAPSHOT_PATH = "/snapshots/import";
const TAR = "application/x-tar";
const ARCHIVE_BODY = z.string().openapi({ format: "binary", description: "A snapshot archive (ustar)" });

export const exportSnapshotRoute = createRoute({
  method: "get",
  path: "/snapshots/{snapshotId}/export",
  summary: "Export a snapshot as a portable archive",
  description:
    "Extension. A tar stream: snapshot.json (the record), each payload file in its seekable compressed form " +
    "(`*.sfc`: independent zstd/lz4 frames plus a seek table, readable by `zstd -d` / `lz4 -d`; zero regions take " +
    "no space and decode to holes), and last manifest.json with every entry's size and sha256.",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: { params: SNAPSHOT_PATH },
  responses: {
    200: { description: "The archive, streamed", content: { [TAR]: { schema: ARCHIVE_BODY } } },
    ...errorResponses(404),
  },
});

export const importSnapshotRoute = createRoute({
  method: "post",
  path: IMPORT_SNAPSHOT_PATH,
  summary: "Import a snapshot archive",
  description:
    "Extension. The body is an archive from GET /snapshots/{id}/export, streamed (no body size limit). It becomes a " +
    "new snapshot (new id, no name) on `host_id` or on the least loaded online host, once every sha256 in its " +
    "manifest and every chunk checksum of its seek tables check out, its record is within the request limits (names, " +
    "tags, image, size, vCPUs) and its squashfs image is exactly one regular file of the recorded size. A damaged, " +
    "truncated or out-of-limit archive is a 400 naming what is wrong, and leaves nothing behind; beyond " +
    "IMPORT_MAX_BYTES a 413; a host without room for the declared sizes a 507; a host running IMPORT_MAX_CONCURRENT " +
    "imports a 503.",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    query: z.object({ host_id: HOST_ID.optional().openapi({ description: "The host to import onto" }) }),
    body: { content: { [TAR]: { schema: ARCHIVE_BODY } }, required: true },
  },
  responses: {
    201: jsonResponse(SNAPSHOT_SCHEMA, "The imported snapshot"),
    ...errorResponses(400, 413, 504, 507),
  },
});

export function registerSnapshotTransferRoutes(app: App, deps: AppDeps): void {
  app.openapi(exportSnapshotRoute, async (c) => {
    const snapshot = await requireSnapshot(deps, c.req.valid("param").snapshotId);
    const listing = EXPORT_LISTING.parse(
      await (await fetchFromHost(deps, snapshot.host_id, `/snapshots/${snapshot.id}/export`)).json(),
    );
    const archive = pack();
    writeArchive(deps, snapshot, listing, archive).catch((error: Error) => {
      deps.log.warn({ snapshotId: snapshot.id, err: error.message }, "export ended early");
      archive.destroy(error);
    });
    return new Response(ReadableStream.from(archive) as ReadableStream<Uint8Array>, {
      status: 200,
      headers: { "content-type": TAR, "content-disposition": `attachment; filename="snapshot-${snapshot.id}.tar"` },
    });
  });

  app.openapi(importSnapshotRoute, async (c) => {
    const requested = c.req.valid("query").host_id;
    const hostId = await pickHost(deps, undefined, requested);
    const id = newId();
    const response = await fetchFromHost(deps, hostId, `/imports/${id}`, {
      method: "PUT",
      body: c.req.raw.body,
      headers: { "content-type": TAR },
    });
    const result = z.object({ snapshot: SNAPSHOT_SCHEMA, event_id: z.string() }).parse(await response.json());
    await waitForReadModel(deps, result.event_id, "import");
    return c.json(presentSnapshot(deps, result.snapshot), 201);
  });
}

/** The record, each payload file as the host serves it, then the manifest of sizes and sha256s. */
async function writeArchive(
  deps: AppDeps,
  snapshot: Snapshot,
  listing: { record: unknown; files: Array<{ name: string; size: number }> },
  archive: Pack,
): Promise<void> {
  const manifest: ArchiveManifest = { format: ARCHIVE_FORMAT, entries: [] };
  const record = Buffer.from(`${JSON.stringify(listing.record, null, 2)}\n`);
  await addEntry(archive, ARCHIVE_RECORD_ENTRY, record.length, [record], manifest);
  for (const file of listing.files) {
    const response = await fetchFromHost(deps, snapshot.host_id, `/snapshots/${snapshot.id}/files/${file.name}`);
    await addEntry(archive, file.name, file.size, Readable.fromWeb(response.body! as never), manifest);
  }
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  await addEntry(archive, ARCHIVE_MANIFEST_ENTRY, manifestBytes.length, [manifestBytes], manifest, false);
  archive.finalize();
}

async function addEntry(
  archive: Pack,
  name: string,
  size: number,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  manifest: ArchiveManifest,
  listInManifest = true,
): Promise<void> {
  const hash = createHash("sha256");
  let written = 0;
  await new Promise<void>((resolve, reject) => {
    const entry = archive.entry({ name, size, mode: 0o644, mtime: new Date() }, (error) =>
      error ? reject(error) : resolve(),
    );
    (async () => {
      for await (const chunk of chunks) {
        hash.update(chunk);
        written += chunk.length;
        if (!entry.write(chunk)) await new Promise<void>((drained) => entry.once("drain", () => drained()));
      }
      if (written !== size) throw new Error(`${name}: the host sent ${written} bytes of ${size}`);
      entry.end(undefined);
    })().catch((error: Error) => {
      entry.destroy(error);
      reject(error);
    });
  });
  if (listInManifest) manifest.entries.push({ name, size, sha256: hash.digest("hex") });
}
