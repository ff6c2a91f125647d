// Snapshot archives taken apart and put back together as an attacker would: entries edited, the manifest (and an
// image's checksum list) recomputed, so only the importer's own checks stand in the way.
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { Readable } from "node:stream";
import { extract, pack } from "tar-stream";
import { blockCodec } from "../../shared/codec/index.ts";
import { ARCHIVE_FORMAT, ARCHIVE_MANIFEST_ENTRY } from "../../shared/snapshots/archive.ts";

export interface ArchiveEntry {
  name: string;
  data: Buffer;
}

/** The entries of a compressed Standby snapshot's archive, in the order an export writes them. */
export const COMPRESSED_STANDBY_ENTRIES = [
  "snapshot.json",
  "disk.raw.sfc",
  "device-state.sfc",
  "memory.raw.sqfs",
  "memory.raw.sqfs.sums",
  "manifest.json",
];

export async function entriesOf(archive: Buffer): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [];
  const reader = extract();
  Readable.from([archive]).pipe(reader);
  for await (const entry of reader) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.push({ name: entry.header.name, data: Buffer.concat(chunks) });
  }
  return entries;
}

/** An archive of `entries` (any manifest among them dropped) with a manifest recomputed over them. */
export async function archiveOf(entries: ArchiveEntry[]): Promise<Buffer> {
  const payload = entries.filter((entry) => entry.name !== ARCHIVE_MANIFEST_ENTRY);
  const manifest = {
    format: ARCHIVE_FORMAT,
    entries: payload.map(({ name, data }) => ({
      name,
      size: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
    })),
  };
  const writer = pack();
  for (const { name, data } of [
    ...payload,
    { name: ARCHIVE_MANIFEST_ENTRY, data: Buffer.from(JSON.stringify(manifest)) },
  ])
    writer.entry({ name }, data);
  writer.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of writer) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A checksum list for `image` that covers it end to end in one piece, as an attacker can always compute. */
export async function checksumsOf(image: Buffer): Promise<Buffer> {
  const codec = await blockCodec();
  return Buffer.from(JSON.stringify({ version: 1, pieces: [[0, image.length, codec.checksum(image)]] }));
}

/**
 * POSTs an archive and resolves with the answer even when the server answers before reading the whole body (a
 * refusal) and closes the connection while it is still being sent, which `fetch` reports as a failed request.
 */
export function postArchive(url: string, apiKey: string, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const request = httpRequest(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${apiKey}`,
        "content-type": "application/x-tar",
        "content-length": body.length,
      },
    });
    request.on("response", (response) => {
      answered = true;
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode!, text: Buffer.concat(chunks).toString() }));
      response.on("error", reject);
    });
    request.on("error", (error) => {
      if (!answered) reject(error); // after an answer: the rest of the body was refused, as answered
    });
    request.end(body);
  });
}
