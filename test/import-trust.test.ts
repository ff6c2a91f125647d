// Hostile snapshot archives, as an attacker holding one API key would build them from a real export (checksums and
// manifest recomputed, so only our own checks stand in the way), through the real HTTP import route and the real
// payload server of a whole service on real QEMU guests. Each is a 4xx with a clear code, leaves nothing on disk, and
// the read model keeps moving.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codecBackend } from "../shared/codec/backend.ts";
import {
  chunkCountFromFooter,
  decodeTrailer,
  encodeTrailer,
  FOOTER_LENGTH,
  trailerLength,
} from "../shared/codec/format.ts";
import { compressFile, decompressFile } from "../shared/codec/index.ts";
import { hostPayloadKey, signPayloadRequest } from "../shared/fleet-secret.ts";
import { ImageError } from "../shared/hypervisor/errors.ts";
import { loadImage } from "../shared/hypervisor/image.ts";
import { writeSquashfsImage } from "../shared/squashfs/writer.ts";
import {
  type ArchiveEntry,
  archiveOf,
  COMPRESSED_STANDBY_ENTRIES,
  checksumsOf,
  entriesOf,
  postArchive,
} from "./helpers/archives.ts";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";

const MIB = 1024 ** 2;
const FLEET_SECRET = "import-trust-fleet-secret-0123456789";
const IMPORT_MAX_BYTES = 48 * MIB;
const work = mkdtempSync(path.join(os.tmpdir(), "import-trust-"));
let service: RunningService;
/** The real export every hostile archive is built from, as entries in archive order. */
let original: Entry[];
let exportedId: string;

type Entry = ArchiveEntry;
// biome-ignore lint/suspicious/noExplicitAny: records are edited as loose JSON, as an attacker would
type Json = any;

beforeAll(async () => {
  service = await startService({
    FLEET_SECRET,
    IMPORT_MAX_BYTES: String(IMPORT_MAX_BYTES),
    IMPORT_MAX_CONCURRENT: "1",
  });
  const created = await post("/instances", { name: "trust-src", size: "128MB", overlay_size: "16MB" });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  await waitForTick(service.api, "trust-src", 2);
  const snapshot = await post("/instances/trust-src/snapshots", {
    kind: "Standby",
    name: "trusted",
    compression: { enabled: true, algorithm: "zstd", level: 1 },
  });
  expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
  exportedId = snapshot.body.id;
  await waitFor(
    async () => (await jsonOf(await service.api(`/snapshots/${exportedId}`))).compression_state === "compressed",
    { timeoutMs: 120_000, intervalMs: 250, what: "compression" },
  );
  const exported = await service.api(`/snapshots/${exportedId}/export`);
  expect(exported.status).toBe(200);
  original = await entriesOf(Buffer.from(await exported.arrayBuffer()));
  expect(original.map((entry) => entry.name)).toEqual(COMPRESSED_STANDBY_ENTRIES);
}, 300_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  rmSync(work, { recursive: true, force: true });
});

async function post(pathAndQuery: string, json: unknown): Promise<{ status: number; body: Json }> {
  const response = await service.api(pathAndQuery, { method: "POST", json });
  return { status: response.status, body: await jsonOf(response) };
}

const importArchive = (body: Buffer | ReadableStream<Uint8Array>) =>
  fetch(`${service.baseUrl}/snapshots/import`, {
    method: "POST",
    body,
    headers: { authorization: `Bearer ${service.apiKey()}`, "content-type": "application/x-tar" },
    duplex: "half",
  } as RequestInit);

/** The original entries with some replaced (by name), the record edited by `editRecord`. */
function edited(replace: Record<string, Buffer>, editRecord: (record: Json) => void = () => {}): Entry[] {
  return original.map(({ name, data }) => {
    if (name !== "snapshot.json") return { name, data: replace[name] ?? data };
    const record = JSON.parse(data.toString());
    editRecord(record);
    return { name, data: Buffer.from(JSON.stringify(record)) };
  });
}

/** A squashfs image mksquashfs builds from a directory, and its checksum list (one piece, end to end). */
async function mksquashfs(name: string, fill: (root: string) => void): Promise<Record<string, Buffer>> {
  const root = path.join(work, `${name}-root`);
  mkdirSync(root);
  fill(root);
  const image = path.join(work, `${name}.sqfs`);
  execFileSync("mksquashfs", [root, image, "-comp", "zstd", "-b", "1M", "-noappend", "-no-progress"], {
    stdio: "ignore",
  });
  return imageEntries(readFileSync(image));
}

async function imageEntries(image: Buffer): Promise<Record<string, Buffer>> {
  return { "memory.raw.sqfs": image, "memory.raw.sqfs.sums": await checksumsOf(image) };
}

/** A sparse file of `size` bytes. */
async function sparseFile(name: string, size: number): Promise<string> {
  const file = path.join(work, name);
  const handle = await open(file, "w");
  await handle.truncate(size);
  await handle.close();
  return file;
}

const storedNames = (dir: string) => readdirSync(path.join(service.dataDir, dir)).sort();
const snapshotIds = async () =>
  ((await jsonOf(await service.api("/snapshots"))) as Array<{ id: string }>).map((item) => item.id).sort();

/** Sends the archive and expects a 4xx with `code` and a message matching `message`, leaving nothing behind. */
async function expectRefused(archive: Buffer, status: number, code: string, message: RegExp): Promise<void> {
  const [snapshotsBefore, storedBefore, cacheBefore] = [await snapshotIds(), storedNames("snapshots"), cacheNames()];
  const response = await postArchive(`${service.baseUrl}/snapshots/import`, service.apiKey(), archive);
  const body = JSON.parse(response.text);
  expect({ status: response.status, code: body.code }, response.text).toEqual({ status, code });
  expect(body.message).toMatch(message);
  expect(storedNames("snapshots")).toEqual(storedBefore); // no staging dir, no snapshot dir
  expect(cacheNames()).toEqual(cacheBefore);
  expect(await snapshotIds()).toEqual(snapshotsBefore); // no record, no event applied
}

function cacheNames(): string[] {
  try {
    return storedNames("cache");
  } catch {
    return [];
  }
}

describe("hostile images inside an archive", () => {
  it("refuses memory.raw as a symlink to a host file", async () => {
    const image = await mksquashfs("symlink", (root) => symlinkSync("/etc/hostname", path.join(root, "memory.raw")));
    await expectRefused(await archiveOf(edited(image)), 400, "invalid_request", /not an image this service writes/);
  });

  it("refuses a device node, a FIFO and an extra file beside memory.raw", async () => {
    const withRaw = (extra: (root: string) => void) => (root: string) => {
      writeFileSync(path.join(root, "memory.raw"), "");
      execFileSync("truncate", ["-s", "128M", path.join(root, "memory.raw")]);
      extra(root);
    };
    const cases = {
      device: withRaw((root) => execFileSync("mknod", [path.join(root, "vda"), "b", "254", "0"])),
      fifo: withRaw((root) => execFileSync("mkfifo", [path.join(root, "pipe")])),
      extra: withRaw((root) => writeFileSync(path.join(root, "extra"), "more")),
    };
    for (const [name, fill] of Object.entries(cases)) {
      const image = await mksquashfs(name, fill);
      await expectRefused(await archiveOf(edited(image)), 400, "invalid_request", /not an image this service writes/);
    }
  });

  it("refuses an image of our own format holding a payload of the wrong size", async () => {
    const short = await sparseFile("short-memory.raw", 64 * MIB);
    const image = path.join(work, "short.sqfs");
    await writeSquashfsImage(short, image, { algorithm: "zstd", level: 1, name: "memory.raw" });
    await expectRefused(
      await archiveOf(edited(await imageEntries(readFileSync(image)))),
      400,
      "invalid_request",
      /not an image this service writes/,
    );
  });
});

describe("sizes an archive declares", () => {
  it("refuses a seek table with a 2 GiB chunk size", async () => {
    const raw = path.join(work, "disk.raw");
    writeFileSync(path.join(work, "disk.raw.sfc"), original.find((entry) => entry.name === "disk.raw.sfc")!.data);
    await decompressFile(path.join(work, "disk.raw.sfc"), raw);
    const oneChunk = path.join(work, "one-chunk.sfc");
    await compressFile(raw, oneChunk, { algorithm: "zstd", level: 1, chunkSize: 16 * MIB });
    const bytes = readFileSync(oneChunk);
    const backend = await codecBackend();
    const count = chunkCountFromFooter(bytes.subarray(bytes.length - FOOTER_LENGTH), bytes.length);
    const index = decodeTrailer(
      bytes.subarray(bytes.length - trailerLength(count)),
      count,
      bytes.length,
      backend.checksum,
    );
    // One chunk still: the whole 16 MiB disk is within a "2 GiB" chunk, so the index stays consistent.
    const trailer = encodeTrailer({ ...index, chunkSize: 2 ** 31 }, backend.checksum);
    const hostile = Buffer.concat([bytes.subarray(0, index.framesLength), trailer]);
    await expectRefused(
      await archiveOf(edited({ "disk.raw.sfc": hostile })),
      400,
      "invalid_request",
      /chunk size of 2147483648 bytes/,
    );
  });

  it("refuses a disk that decodes larger than the record's overlay, before writing it", async () => {
    const huge = path.join(work, "huge-disk.sfc");
    await compressFile(await sparseFile("huge-disk.raw", 4 * 1024 * MIB), huge, { algorithm: "zstd", level: 1 });
    await expectRefused(
      await archiveOf(edited({ "disk.raw.sfc": readFileSync(huge) })),
      400,
      "invalid_request",
      /declares 4294967296 bytes for a disk of 16MB/,
    );
  });

  it("refuses a record declaring a 1 TB uncompressed payload", async () => {
    const archive = await archiveOf(
      edited({}, (record) => {
        record.snapshot.uncompressed_size_bytes = 1024 ** 4;
      }),
    );
    await expectRefused(archive, 400, "invalid_request", /snapshot\.uncompressed_size_bytes: Too big/);
  });

  it("answers 413 for an archive beyond IMPORT_MAX_BYTES", async () => {
    const padded = edited({ "disk.raw.sfc": Buffer.alloc(IMPORT_MAX_BYTES + MIB) });
    await expectRefused(await archiveOf(padded), 413, "invalid_request", /larger than this host's limit/);
  });
});

describe("records that no request could have made", () => {
  // [what, record part, field, hostile value, what the message names]
  const cases: Array<[string, "snapshot" | "source", string, unknown, RegExp]> = [
    [
      "a NUL in a tag",
      "snapshot",
      "tags",
      { "team\u0000x": "a" },
      /snapshot\.tags\."team\\u0000x": Invalid key in record/,
    ],
    [
      "a control character in a tag value",
      "snapshot",
      "tags",
      { team: "a\u001b[2J" },
      /snapshot\.tags\.team: tag values may use/,
    ],
    ["a control character in the source's name", "source", "name", "src\u0007", /source\.name: lowercase letters/],
    ["a snapshot name with a NUL", "snapshot", "name", "named\u0000", /snapshot\.name: lowercase letters/],
    ["a 64-vCPU source", "source", "vcpus", 64, /source\.vcpus: Too big/],
    ["a 1 TB source", "source", "size", "1024GB", /source\.size: size must be between/],
    ["a source image that leaves the images dir", "source", "image", "../../etc", /source\.image: lowercase letters/],
    ["an absolute source image", "source", "image", "/etc/passwd", /source\.image: lowercase letters/],
    ["a source id that is a path", "source", "id", "../instances/x", /source\.id: not a resource id/],
  ];
  it.each(cases)("refuses %s", async (_what, part, field, value, message) => {
    const archive = await archiveOf(
      edited({}, (record) => {
        record[part][field] = value;
      }),
    );
    await expectRefused(archive, 400, "invalid_request", message);
  });

  it("refuses a hostile image name on create, as on import", async () => {
    for (const image of ["../busybox", "busybox/../../etc", ".hidden", "a".repeat(65)]) {
      const created = await post("/instances", { name: "bad-image", image });
      expect({ image, status: created.status, code: created.body.code }).toEqual({
        image,
        status: 400,
        code: "invalid_request",
      });
    }
  });
});

describe("the payload server's PUT /imports/<id>", () => {
  const payloadUrl = async () => {
    const hosts: Array<{ id: string; payload_url: string }> = await jsonOf(await service.api("/hosts"));
    return hosts[0]!.payload_url;
  };
  const put = async (id: string, archive: Buffer) =>
    fetch(`${await payloadUrl()}/imports/${id}`, {
      method: "PUT",
      body: archive,
      headers: {
        authorization: `Bearer ${signPayloadRequest(hostPayloadKey(FLEET_SECRET, service.hostId()), { method: "PUT", path: `/imports/${id}` })}`,
      },
    });

  it("refuses an id that exists with 409 and deletes nothing, good archive or bad", async () => {
    const stored = readdirSync(path.join(service.dataDir, "snapshots", exportedId)).sort();
    for (const archive of [await archiveOf(original), Buffer.from("not a tar")]) {
      const response = await put(exportedId, archive);
      expect(response.status).toBe(409);
      expect((await jsonOf(response)).code).toBe("conflict");
      expect(readdirSync(path.join(service.dataDir, "snapshots", exportedId)).sort()).toEqual(stored);
    }
    expect((await service.api(`/snapshots/${exportedId}`)).status).toBe(200);
  });

  it("takes one import at a time here (IMPORT_MAX_CONCURRENT=1): the second is a 503 until the first ends", async () => {
    const archive = await archiveOf(original);
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(archive.subarray(0, 1024));
        await held;
        controller.enqueue(archive.subarray(1024));
        controller.close();
      },
    });
    const first = importArchive(slow);
    // The first holds the host's one slot once its staging directory exists (workers/host/import.ts claimId).
    const snapshotsDir = path.join(service.dataDir, "snapshots");
    await waitFor(() => readdirSync(snapshotsDir).some((name) => name.startsWith(".import-")) || undefined, {
      timeoutMs: 30_000,
      intervalMs: 50,
      what: "the first import to reach the host",
    });
    // Through fetch, as the SDK sends it: the API reads the refused body to its end before answering, so the client
    // gets the 503 rather than a connection reset under its upload (api/middleware/unread-body.ts).
    const second = await importArchive(archive);
    const refusal = await jsonOf(second);
    expect({ status: second.status, code: refusal.code }, JSON.stringify(refusal)).toEqual({
      status: 503,
      code: "unavailable",
    });
    expect(refusal.message).toMatch(/runs 1 imports already/);
    expect(second.headers.get("connection")).not.toBe("close");
    release();
    expect((await first).status).toBe(201);
  });
});

describe("after every refusal", () => {
  it("still imports the real export, and the read model shows it", async () => {
    const response = await importArchive(await archiveOf(original));
    const body = await jsonOf(response);
    expect(response.status, JSON.stringify(body)).toBe(201);
    expect(await snapshotIds()).toContain(body.id);
    const fork = await post(`/snapshots/${body.id}/fork`, { name: "trusted-fork" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
  }, 120_000);
});

describe("image manifests", () => {
  it("refuses kernel and initrd paths that leave the image directory, by name or by link", async () => {
    const images = path.join(work, "images");
    const image = path.join(images, "evil");
    mkdirSync(image, { recursive: true });
    writeFileSync(path.join(image, "vmlinuz"), "kernel");
    const manifest = (kernel: string) =>
      writeFileSync(
        path.join(image, "manifest.json"),
        JSON.stringify({
          name: "evil",
          version: 1,
          kernel,
          initrd: "vmlinuz",
          cmdline: "",
          defaultMemoryBytes: 128 * MIB,
          defaultDiskBytes: 16 * MIB,
          sources: [],
          builtAt: new Date().toISOString(),
        }),
      );
    manifest("vmlinuz");
    await expect(loadImage("evil", images)).resolves.toMatchObject({ kernelPath: path.join(image, "vmlinuz") });
    for (const kernel of ["../../../etc/passwd", "/etc/passwd", "sub/../../x"]) {
      manifest(kernel);
      await expect(loadImage("evil", images)).rejects.toBeInstanceOf(ImageError);
    }
    symlinkSync("/etc/passwd", path.join(image, "linked"));
    manifest("linked");
    await expect(loadImage("evil", images)).rejects.toThrow(/resolves outside/);
    await expect(loadImage("../images/evil", images)).rejects.toThrow(/not a valid image name/);
  });
});
