// The check every file handed to QEMU passes: a regular file of its size inside its directory, never a link, a FIFO
// or a device; and the request limits checked again on an instance about to boot.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sampleInstance } from "../../test/helpers/resources.ts";
import { assertRunnable } from "../../workers/host/instances.ts";
import { ApiError } from "../errors.ts";
import { assertPayloadFile } from "./payload-files.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "payload-files-"));
const dataDir = path.join(dir, "data");
const outside = path.join(dir, "outside");
mkdirSync(path.join(dataDir, "instances", "a"), { recursive: true });
mkdirSync(outside);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const inData = (name: string) => path.join(dataDir, "instances", "a", name);
const refusal = (file: string, size?: number) =>
  assertPayloadFile({ file, root: dataDir, what: "memory file", size }).then(
    () => "accepted",
    (error: unknown) => (error instanceof ApiError ? `${error.code}: ${error.message}` : String(error)),
  );

describe("assertPayloadFile", () => {
  it("accepts a regular file of its size inside the data dir", async () => {
    writeFileSync(inData("memory.raw"), Buffer.alloc(4096));
    expect(await refusal(inData("memory.raw"), 4096)).toBe("accepted");
    expect(await refusal(inData("memory.raw"))).toBe("accepted");
  });

  it("refuses a link, a FIFO, a device, a wrong size and a file outside the data dir", async () => {
    writeFileSync(path.join(outside, "secret"), "host file");
    symlinkSync(path.join(outside, "secret"), inData("linked.raw"));
    execFileSync("mkfifo", [inData("fifo.raw")]);
    symlinkSync(dataDir, path.join(dir, "data-link"));
    expect(await refusal(inData("linked.raw"))).toMatch(/^invalid_state: .* is a symbolic link; no guest was started$/);
    expect(await refusal(inData("fifo.raw"))).toMatch(/is not a regular file/);
    expect(await refusal("/dev/null")).toMatch(/is not a regular file/);
    expect(await refusal(inData("memory.raw"), 8192)).toMatch(/holds 4096 bytes, not 8192/);
    expect(await refusal(path.join(outside, "secret"))).toMatch(/resolves outside/);
    expect(await refusal(inData("missing.raw"))).toMatch(/cannot be opened/);
    // A path through a linked directory is fine as long as it resolves inside.
    expect(await refusal(path.join(dir, "data-link", "instances", "a", "memory.raw"))).toBe("accepted");
  });
});

describe("assertRunnable", () => {
  const instance = sampleInstance({
    id: "a0000000000000000000000b",
    name: "runnable",
    state: "Stopped",
    overlay_size: "16MB",
    started_at: null,
    host_id: "host-a",
  });

  it("passes an instance a request could make and refuses one beyond the limits", () => {
    expect(() => assertRunnable(instance)).not.toThrow();
    for (const hostile of [{ vcpus: 64 }, { size: "1024GB" }, { image: "../etc" }, { tags: { "a\u0000": "b" } }]) {
      expect(() => assertRunnable({ ...instance, ...hostile })).toThrow(/is outside the limits/);
    }
  });
});
