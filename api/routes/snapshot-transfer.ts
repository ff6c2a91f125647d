// Export and import of snapshots as portable archives (shared/snapshots/archive.ts). Export streams a snapshot's bytes
// into the archive from the object store when it holds them, else from the owning host's payload server; import
// streams the request body on to the chosen host, which verifies everything before the snapshot exists (and uploads
// it to the store afterwards, as after a capture).
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
  type ExportListing,
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
    const source = await exportSource(deps, snapshot);
    const archive = pack();
    writeArchive(source, archive).catch((error: Error) => {
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

/** Where an export reads the snapshot: its listing (record and files) and each file's bytes. */
interface ExportSource {
  listing: ExportListing;
  open(file: ExportListing["files"][number]): Promise<AsyncIterable<Buffer>>;
}

/**
 * The object store when it holds the snapshot's current payload (as pulls read it first), so an export neither loads
 * the owner nor needs it online; else the owner's payload server. A store copy is checked as it passes: each object's
 * size and sha256 against the signed manifest.
 */
async function exportSource(deps: AppDeps, snapshot: Snapshot): Promise<ExportSource> {
  const objects = deps.objects;
  const manifest =
    objects && (snapshot.storage ?? "local") !== "local"
      ? await objects.readManifest(snapshot.id).catch((error: Error) => {
          deps.log.warn({ snapshotId: snapshot.id, err: error.message }, "export: the store's copy is unreadable");
          return undefined;
        })
      : undefined;
  if (objects && manifest && manifest.compression_state === snapshot.compression_state) {
    return {
      listing: { record: manifest.record, files: manifest.entries },
      open: (file) => objects.stream(snapshot.id, { name: file.name, size: file.size, sha256: file.sha256 ?? "" }),
    };
  }
  const listing = EXPORT_LISTING.parse(
    await (await fetchFromHost(deps, snapshot.host_id, `/snapshots/${snapshot.id}/export`)).json(),
  );
  return {
    listing,
    open: async (file) => {
      const response = await fetchFromHost(deps, snapshot.host_id, `/snapshots/${snapshot.id}/files/${file.name}`);
      return Readable.fromWeb(response.body! as never);
    },
  };
}

/** The record, each payload file as its source gives it, then the manifest of sizes and sha256s. */
async function writeArchive({ listing, open }: ExportSource, archive: Pack): Promise<void> {
  const manifest: ArchiveManifest = { format: ARCHIVE_FORMAT, entries: [] };
  const record = Buffer.from(`${JSON.stringify(listing.record, null, 2)}\n`);
  await addEntry(archive, ARCHIVE_RECORD_ENTRY, record.length, [record], manifest);
  for (const file of listing.files) {
    await addEntry(archive, file.name, file.size, await open(file), manifest);
    const added = manifest.entries.at(-1)!;
    if (file.sha256 !== undefined && added.sha256 !== file.sha256) {
      throw new Error(`${file.name}: its sha256 is not the one its listing gives`);
    }
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
      if (written !== size) throw new Error(`${name}: its source sent ${written} bytes of ${size}`);
      entry.end(undefined);
    })().catch((error: Error) => {
      entry.destroy(error);
      reject(error);
    });
  });
  if (listInManifest) manifest.entries.push({ name, size, sha256: hash.digest("hex") });
}
