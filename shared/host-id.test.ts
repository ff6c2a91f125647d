import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../test/helpers/fixtures.ts";
import { HOST_ID_PATTERN, HostIdError, resolveHostId } from "./host-id.ts";

const data = tempDir("host-id");
afterAll(() => data.remove());

describe("resolveHostId", () => {
  it("generates an id once and keeps it", () => {
    const dir = path.join(data.dir, "fresh");
    const id = resolveHostId(undefined, dir);
    expect(id).toMatch(HOST_ID_PATTERN);
    expect(readFileSync(path.join(dir, "host-id"), "utf8")).toBe(`${id}\n`);
    expect(resolveHostId(undefined, dir)).toBe(id);
  });

  it("refuses an empty or garbled host-id file rather than giving the host a new identity", () => {
    for (const [name, content] of [
      ["empty", ""],
      ["garbled", "\u0000\u0000\u0000"],
    ]) {
      const dir = path.join(data.dir, name!);
      resolveHostId(undefined, dir);
      writeFileSync(path.join(dir, "host-id"), content!);
      expect(() => resolveHostId(undefined, dir)).toThrow(HostIdError);
      expect(() => resolveHostId(undefined, dir)).toThrow(/host-id is (empty|not a host id)/);
      expect(readFileSync(path.join(dir, "host-id"), "utf8")).toBe(content); // left as found
    }
  });
});
