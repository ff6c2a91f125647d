// No Docker engine runs here: check that docker-compose.yml parses and that what it runs is real.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ENV_SCHEMA } from "../shared/config.ts";
import { entryCommand, SERVICE_PROCESSES } from "../supervisor/processes.ts";

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  build?: string;
}

const compose = parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};

describe("docker-compose.yml", () => {
  it("runs redis and every supervised process as a service", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["redis", ...SERVICE_PROCESSES.map((p) => p.name)].sort());
  });

  it.each(SERVICE_PROCESSES.map((p) => [p.name, p] as const))(
    "%s runs the same entry point as npm start",
    (name, spec) => {
      const service = compose.services[name]!;
      expect(service.command).toEqual(entryCommand(spec.entry));
      expect(existsSync(spec.entry)).toBe(true);
      expect(service.build).toBe(".");
    },
  );

  it("sets only variables the config schema knows", () => {
    const known = new Set(Object.keys(ENV_SCHEMA.shape));
    for (const [name, service] of Object.entries(compose.services)) {
      if (name === "redis") continue;
      const variables = Object.keys(service.environment ?? {});
      expect(variables.length).toBeGreaterThan(0);
      for (const variable of variables) expect(known, `${name}: ${variable}`).toContain(variable);
      expect(() => ENV_SCHEMA.parse(service.environment)).not.toThrow();
      expect(service.environment?.REDIS_URL).toBe("redis://redis:6379");
    }
  });

  it("shares one data volume between the API and the workers", () => {
    for (const spec of SERVICE_PROCESSES) {
      expect(compose.services[spec.name]!.volumes).toContain("snapfleet-data:/app/data");
    }
    expect(compose.volumes).toHaveProperty("snapfleet-data");
  });

  it("runs redis with AOF, noeviction and a volume", () => {
    const redis = compose.services.redis!;
    expect(redis.command?.join(" ")).toContain("--appendonly yes");
    expect(redis.command?.join(" ")).toContain("--maxmemory-policy noeviction");
    expect(redis.volumes).toContain("redis-data:/data");
  });

  it("builds from a Dockerfile that installs the packages the workers need", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8");
    for (const pkg of ["qemu-system-x86", "busybox-static", "libzstd-dev"]) expect(dockerfile).toContain(pkg);
  });
});
