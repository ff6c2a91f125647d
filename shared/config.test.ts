import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, ENV_SCHEMA, parseConfig, parseSentinelUrl } from "./config.ts";

describe("parseConfig", () => {
  it("applies the embedded defaults", () => {
    const config = parseConfig({});
    expect(config.PORT).toBe(8080);
    expect(config.DATA_DIR).toBe(path.resolve("data"));
    expect(config.DATABASE_PATH).toBe(path.resolve("data", "snapfleet.db"));
    expect(config.REDIS_URL).toBeUndefined();
    expect(config.API_KEYS).toEqual([]);
    expect(config.BODY_LIMIT_BYTES).toBe(1024 * 1024);
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.API_REPLICA_ID).toBe(`${hostname()}-8080`);
  });

  it("splits API_KEYS and resolves the database inside DATA_DIR", () => {
    const config = parseConfig({ API_KEYS: `${"a".repeat(16)}, ${"b".repeat(20)}`, DATA_DIR: "/srv/sf" });
    expect(config.API_KEYS).toEqual(["a".repeat(16), "b".repeat(20)]);
    expect(config.DATABASE_PATH).toBe("/srv/sf/snapfleet.db");
  });

  it.each([
    ["PORT", "eighty"],
    ["PORT", "70000"],
    ["REDIS_URL", "localhost:6379"],
    ["LOG_LEVEL", "loud"],
    ["API_KEYS", "short"],
    ["QEMU_ACCEL", "hvf"],
    ["BODY_LIMIT_BYTES", "-1"],
    ["WORKER_RESTART", "maybe"],
    ["DATABASE_URL", "mysql://db/snapfleet"],
    ["API_REPLICA_ID", "two words"],
  ])("names %s when its value %j is bad", (name, value) => {
    expect(() => parseConfig({ [name]: value })).toThrow(ConfigError);
    try {
      parseConfig({ [name]: value });
    } catch (error) {
      expect((error as ConfigError).message).toContain(`${name}:`);
      expect((error as ConfigError).message).toContain(JSON.stringify(value));
    }
  });

  it("keeps a one-host fleet's payload server on loopback and takes the fleet secret from a file", () => {
    const single = parseConfig({});
    expect(single).toMatchObject({
      FLEET_SECRET: undefined,
      PAYLOAD_BIND: "127.0.0.1",
      PAYLOAD_ADVERTISE_HOST: "127.0.0.1",
    });
    const dir = mkdtempSync(path.join(tmpdir(), "snapfleet-config-"));
    try {
      writeFileSync(path.join(dir, "secret"), "a-secret-from-a-mounted-file\n", { mode: 0o600 });
      const fleet = parseConfig({ FLEET_SECRET_FILE: path.join(dir, "secret") });
      expect(fleet).toMatchObject({ FLEET_SECRET: "a-secret-from-a-mounted-file", PAYLOAD_BIND: "0.0.0.0" });
      expect(fleet).not.toHaveProperty("FLEET_SECRET_FILE");
      writeFileSync(path.join(dir, "short"), "short\n");
      for (const [env, message] of [
        [{ PAYLOAD_BIND: "0.0.0.0" }, "PAYLOAD_BIND: 0.0.0.0 lets other machines in"],
        [{ FLEET_SECRET_FILE: path.join(dir, "missing") }, "FLEET_SECRET_FILE: cannot read"],
        [{ FLEET_SECRET_FILE: path.join(dir, "short") }, "fewer than 16"],
        [{ FLEET_SECRET_FILE: path.join(dir, "secret"), FLEET_SECRET: "x".repeat(16) }, "not both"],
        [{ PAYLOAD_TLS_CERT: "/etc/cert.pem" }, "together"],
        [{ PAYLOAD_HOST: "0.0.0.0" }, "renamed PAYLOAD_BIND"],
      ] as const) {
        expect(() => parseConfig(env), JSON.stringify(env)).toThrow(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("makes REDIS_SENTINELS and REDIS_SENTINEL_NAME one redis+sentinel URL, with the primary's credentials", () => {
    const sentinels = { REDIS_SENTINELS: "10.0.0.1:26379,sentinel-b:26380", REDIS_SENTINEL_NAME: "primary-a" };
    expect(parseConfig(sentinels).REDIS_URL).toBe("redis+sentinel://10.0.0.1:26379,sentinel-b:26380/primary-a");
    const url = parseConfig({ ...sentinels, REDIS_URL: "redis://snapfleet:s3cret@primary" }).REDIS_URL!;
    expect(url).toBe("redis+sentinel://snapfleet:s3cret@10.0.0.1:26379,sentinel-b:26380/primary-a");
    expect(parseSentinelUrl(url)).toEqual({
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "sentinel-b", port: 26380 },
      ],
      name: "primary-a",
      username: "snapfleet",
      password: "s3cret",
    });
    // What the supervisor hands its children (the URL beside the same sentinels) is taken as it is.
    expect(parseConfig({ ...sentinels, REDIS_URL: url }).REDIS_URL).toBe(url);
    for (const env of [
      { REDIS_SENTINELS: "10.0.0.1:26379" },
      { ...sentinels, REDIS_URL: "redis+sentinel://10.0.0.9:26379/primary-a" },
      { ...sentinels, REDIS_SENTINELS: "10.0.0.1" },
    ]) {
      expect(() => parseConfig(env), JSON.stringify(env)).toThrow(ConfigError);
    }
  });

  it("lists every variable in the README", async () => {
    const { readFileSync } = await import("node:fs");
    const readme = readFileSync(path.resolve("README.md"), "utf8");
    for (const name of Object.keys(ENV_SCHEMA.shape)) expect(readme).toContain(`\`${name}\``);
  });
});

describe("entry points at boot", () => {
  it.each(["api/main.ts", "workers/host/main.ts", "workers/compression/main.ts", "supervisor/main.ts"])(
    "%s exits non-zero naming the bad variable",
    (entry) => {
      const result = spawnSync(process.execPath, ["--import", "tsx", entry], {
        env: { ...process.env, PORT: "not-a-port", REDIS_URL: "redis://127.0.0.1:1" },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(result.status).toBe(78);
      expect(result.stderr).toContain("PORT:");
    },
  );
});
