import { statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../test/helpers/fixtures.ts";
import {
  FLEET_SECRET_FILE_NAME,
  hostPayloadKey,
  loadFleetSecret,
  PAYLOAD_TOKEN_TTL_SECONDS,
  signPayloadRequest,
  verifyPayloadRequest,
} from "./fleet-secret.ts";

const SECRET = "a-fleet-secret-of-some-length";
const key = hostPayloadKey(SECRET, "host-a");
const GET_FILE = { method: "GET", path: "/snapshots/abc/files/memory.raw.sfc" };
const NOW = Date.parse("2026-12-04T12:00:00Z");

describe("payload request tokens", () => {
  it("open the request they were signed for, until they expire", () => {
    const token = signPayloadRequest(key, GET_FILE, NOW);
    expect(verifyPayloadRequest(key, GET_FILE, token, NOW)).toEqual({ ok: true });
    expect(verifyPayloadRequest(key, GET_FILE, token, NOW + (PAYLOAD_TOKEN_TTL_SECONDS - 1) * 1000)).toEqual({
      ok: true,
    });
  });

  it.each([
    ["another path", key, { method: "GET", path: "/snapshots/abc/files/disk.raw.sfc" }, NOW, "does not match"],
    ["the same path with a query", key, { ...GET_FILE, path: `${GET_FILE.path}?x=1` }, NOW, "does not match"],
    ["PUT instead of GET", key, { ...GET_FILE, method: "PUT" }, NOW, "does not match"],
    ["another host", hostPayloadKey(SECRET, "host-b"), GET_FILE, NOW, "does not match"],
    ["another fleet", hostPayloadKey(`${SECRET}!`, "host-a"), GET_FILE, NOW, "does not match"],
    ["after its expiry", key, GET_FILE, NOW + (PAYLOAD_TOKEN_TTL_SECONDS + 2) * 1000, "expired"],
  ])("refuse %s", (_what, checkKey, request, now, reason) => {
    const token = signPayloadRequest(key, GET_FILE, NOW);
    const check = verifyPayloadRequest(checkKey, request, token, now);
    expect(check.ok).toBe(false);
    expect(!check.ok && check.reason).toContain(reason);
  });

  it("refuse a tampered expiry, a tampered MAC, a far-future token and malformed ones", () => {
    const token = signPayloadRequest(key, GET_FILE, NOW);
    const [version, expiry, mac] = token.split(".") as [string, string, string];
    const later = `${version}.${Number(expiry) + 3600}.${mac}`;
    const flipped = `${version}.${expiry}.${mac.startsWith("A") ? "B" : "A"}${mac.slice(1)}`;
    for (const bad of [later, flipped]) {
      expect(verifyPayloadRequest(key, GET_FILE, bad, NOW)).toMatchObject({ ok: false, reason: /does not match/ });
    }
    // Even one signed with the right key: nobody signs a token that far ahead.
    const farAhead = signPayloadRequest(key, GET_FILE, NOW + 3600_000);
    expect(verifyPayloadRequest(key, GET_FILE, farAhead, NOW)).toMatchObject({ ok: false, reason: /too far ahead/ });
    for (const bad of [undefined, "", "wrong", `v2.${expiry}.${mac}`, `${token}x`, `v1.-5.${mac}`]) {
      expect(verifyPayloadRequest(key, GET_FILE, bad, NOW).ok, String(bad)).toBe(false);
    }
  });
});

describe("the fleet secret", () => {
  it("is the configured one when set, else generated once into the data dir with mode 0600", () => {
    expect(loadFleetSecret(SECRET, "/nonexistent")).toEqual({ secret: SECRET, source: "configured" });
    const data = tempDir("fleet-secret");
    try {
      const first = loadFleetSecret(undefined, data.dir);
      expect(first.source).toBe("generated");
      expect(first.secret.length).toBeGreaterThanOrEqual(43);
      expect(loadFleetSecret(undefined, data.dir)).toEqual(first);
      expect(statSync(path.join(data.dir, FLEET_SECRET_FILE_NAME)).mode & 0o777).toBe(0o600);
    } finally {
      data.remove();
    }
  });
});
