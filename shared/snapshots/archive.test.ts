// What a listing from another host may name: its files are written under a pull's staging directory by name.
import { describe, expect, it } from "vitest";
import { EXPORT_LISTING } from "./archive.ts";

describe("EXPORT_LISTING", () => {
  it("takes the archive's payload entries and refuses any other name, a path above all", () => {
    const listing = (name: string) => ({ record: {}, files: [{ name, size: 1 }] });
    expect(EXPORT_LISTING.safeParse(listing("memory.raw.sqfs")).success).toBe(true);
    for (const name of ["../../etc/cron.d/x", "/tmp/x", "memory.raw.sfc/../../x", "listing.json", ""]) {
      expect(EXPORT_LISTING.safeParse(listing(name)).success, name).toBe(false);
    }
  });
});
