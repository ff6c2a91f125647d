import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, ENV_SCHEMA, parseConfig } from "./config.ts";

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

  it("lists every variable in the README", async () => {
    const { readFileSync } = await import("node:fs");
    const readme = readFileSync(path.resolve("README.md"), "utf8");
    for (const name of Object.keys(ENV_SCHEMA.shape)) expect(readme).toContain(`\`${name}\``);
  });
});

describe("entry points at boot", () => {
  it.each(["api/main.ts", "workers/capture/main.ts", "workers/compression/main.ts", "supervisor/main.ts"])(
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
