// `npm ci` on a fresh machine needs a lockfile entry for every optional platform package (see
// scripts/complete-lockfile.mjs): this fails when an `npm install` dropped them again.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
// @ts-expect-error a plain ES module script without types
import { missingOptionalEntries, platformOf } from "../scripts/complete-lockfile.mjs";

describe("package-lock.json", () => {
  it("has an entry for every optional platform package (run node scripts/complete-lockfile.mjs)", () => {
    const lock = JSON.parse(readFileSync("package-lock.json", "utf8"));
    expect([...missingOptionalEntries(lock).keys()]).toEqual([]);
  });

  it("reads platforms from package names", () => {
    expect(platformOf("@biomejs/cli-linux-x64-musl")).toEqual({ os: "linux", cpu: "x64", musl: true });
    expect(platformOf("@msgpackr-extract/msgpackr-extract-darwin-arm64")).toEqual({
      os: "darwin",
      cpu: "arm64",
      musl: false,
    });
    expect(platformOf("@msgpackr-extract/msgpackr-extract-linux-arm")).toEqual({
      os: "linux",
      cpu: "arm",
      musl: false,
    });
  });
});
