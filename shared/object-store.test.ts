// The object store's own path against the test run's Ceph S3 gateway: a multipart upload read back byte for byte,
// a download resumed from the pieces an earlier try wrote, and what comes back from the store checked, not believed.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { s3ClientFor } from "../test/helpers/ceph-cluster.ts";
import { tempDir } from "../test/helpers/fixtures.ts";
import { describeWith } from "../test/helpers/needs.ts";
import { ObjectStore, sha256File } from "./object-store.ts";

describeWith("ceph", "ObjectStore on Ceph's S3 gateway", () => {
  const work = tempDir("object-store");
  const bucket = `unit-${Date.now().toString(36)}-${process.pid}`;
  let store: ObjectStore;
  const MiB = 1024 ** 2;

  beforeAll(async () => {
    const s3 = inject("s3");
    const client = s3ClientFor(s3);
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
    store = new ObjectStore({ bucket, ...s3, signingKey: randomBytes(32) });
  });

  afterAll(async () => {
    for (const id of ["big", "small", "evil"]) await store?.deleteSnapshot(id).catch(() => 0);
    store?.close();
    work.remove();
  });

  it("uploads a file in parts read from its ranges and downloads it again, resuming from an earlier try", async () => {
    const file = path.join(work.dir, "big.sfc");
    writeFileSync(file, randomBytes(150 * MiB)); // three 64 MiB parts, the last one short
    await store.putFile("big", "memory.raw.sfc", file);
    expect(await store.list("big")).toEqual(["memory.raw.sfc"]);
    const entry = { name: "memory.raw.sfc", size: 150 * MiB, sha256: await sha256File(file) };

    // An earlier try wrote pieces 0 and 2 (8 MiB each) and died: only the others are fetched now.
    const target = path.join(work.dir, "big.out");
    const original = readFileSync(file);
    const partial = Buffer.alloc(150 * MiB);
    original.copy(partial, 0, 0, 8 * MiB);
    original.copy(partial, 16 * MiB, 16 * MiB, 24 * MiB);
    writeFileSync(target, partial);
    writeFileSync(`${target}.pieces`, JSON.stringify([0, 2]));
    expect(await store.download("big", entry, target)).toBe(150 * MiB - 16 * MiB);
    expect(readFileSync(target).equals(original)).toBe(true);
    expect(existsSync(`${target}.pieces`)).toBe(false);
  });

  it("refuses a download whose bytes do not match the manifest, and starts it over on the next try", async () => {
    const file = path.join(work.dir, "small.sfc");
    writeFileSync(file, randomBytes(20 * MiB));
    await store.putFile("small", "disk.raw.sfc", file);
    const entry = { name: "disk.raw.sfc", size: 20 * MiB, sha256: await sha256File(file) };
    // A piece list that claims a piece the disk does not hold (lost in a crash): the whole fails, nothing is kept.
    const target = path.join(work.dir, "small.out");
    writeFileSync(target, Buffer.alloc(20 * MiB));
    writeFileSync(`${target}.pieces`, JSON.stringify([1]));
    await expect(store.download("small", entry, target)).rejects.toMatchObject({ code: "unavailable" });
    expect(existsSync(`${target}.pieces`)).toBe(false);
    expect(await store.download("small", entry, target)).toBe(20 * MiB);
    expect(readFileSync(target).equals(readFileSync(file))).toBe(true);
    // A manifest entry longer than the object: a short range is refused, never padded.
    await expect(store.download("small", { ...entry, size: 21 * MiB }, target)).rejects.toMatchObject({
      code: "unavailable",
    });
    // An export's stream: the object whole, and refused when its size is not the manifest's.
    const streamed: Buffer[] = [];
    for await (const chunk of await store.stream("small", entry)) streamed.push(chunk as Buffer);
    expect(Buffer.concat(streamed).equals(readFileSync(file))).toBe(true);
    await expect(store.stream("small", { ...entry, size: 21 * MiB })).rejects.toMatchObject({ code: "unavailable" });
  });

  it("reads a manifest that is not ours as unavailable, and a missing one as absent", async () => {
    expect(await store.readManifest("nothing-here")).toBeUndefined();
    const client = s3ClientFor(inject("s3"));
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: store.key("evil", "manifest.json"), Body: '{"format":"x"}' }),
    );
    client.destroy();
    await expect(store.readManifest("evil")).rejects.toMatchObject({ code: "unavailable" });
  });

  it("refuses a manifest that names a file outside the snapshot's entries (a pull writes to each name)", async () => {
    // Signed by this fleet, so only the name is wrong.
    const entry = { name: "../../../escape.sfc", size: 1, sha256: "0".repeat(64) };
    const manifest = { format: "snapfleet-snapshot/1", record: {}, record_version: 1, compression_state: "none" };
    await store.putManifest("evil", { ...manifest, entries: [entry] } as never);
    await expect(store.readManifest("evil")).rejects.toThrow(/is not one of ours/);
  });

  it("trusts only manifests signed with this fleet's key: write access to the bucket is not enough", async () => {
    const manifest = {
      format: "snapfleet-snapshot/1" as const,
      record: {},
      record_version: 1,
      compression_state: "none",
      entries: [{ name: "disk.raw.sfc", size: 1, sha256: "0".repeat(64) }],
    };
    await store.putManifest("signed", manifest);
    expect(await store.readManifest("signed")).toEqual(manifest);
    const stranger = new ObjectStore({ bucket, ...inject("s3"), signingKey: randomBytes(32) });
    await stranger.putManifest("signed", { ...manifest, record_version: 2 });
    stranger.close();
    await expect(store.readManifest("signed")).rejects.toThrow(/not signed by this fleet/);
    await store.deleteSnapshot("signed");
  });
});
