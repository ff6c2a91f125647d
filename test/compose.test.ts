// No Docker engine runs here: check docker-compose.yml's shape, then run every service it declares as a real
// process with its command and environment exactly as declared (volume paths mapped to temp dirs, the Redis host to
// a private redis-server, service host names to this machine, the published port to a free one) and drive a snapshot
// and fork on each of its two hosts, a fork of one host's snapshot on the other, and an export/import between them.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ENV_SCHEMA } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { type EmbeddedRedis, findRedisServer, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { entryCommand, SERVICE_PROCESSES } from "../supervisor/processes.ts";
import { waitForTick } from "./helpers/console.ts";
import { freePort, jsonOf, tempDir, waitFor } from "./helpers/fixtures.ts";
import { type ServiceProcess, startProcess, waitForLog } from "./helpers/processes.ts";
import { apiConsole, type CapturePoint, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";
import { removeDataDir, TEST_IMAGES_DIR } from "./helpers/service.ts";

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  build?: string;
  ports?: string[];
}

const compose = parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};
const COMPOSE_REDIS_URL = "redis://redis:6379";
const DATA_MOUNT = "/app/data";
const IMAGES_PATH = "/app/images";
const FLEET_SECRET_MOUNT = "/run/secrets/fleet-secret";

/** The supervised process a service runs: its name without a `-<n>` host suffix. */
const roleOf = (serviceName: string) => serviceName.replace(/-\d+$/, "");
const appServices = () => Object.entries(compose.services).filter(([name]) => name !== "redis");
const servicesOfRole = (role: string) => appServices().filter(([name]) => roleOf(name) === role);
const dataVolumeOf = (service: ComposeService) =>
  service.volumes?.find((volume) => volume.endsWith(`:${DATA_MOUNT}`))?.split(":")[0];

describe("docker-compose.yml", () => {
  it("runs redis and only supervised processes, each of them at least once", () => {
    const roles = new Set(appServices().map(([name]) => roleOf(name)));
    expect([...roles].sort()).toEqual(SERVICE_PROCESSES.map((p) => p.name).sort());
    expect(compose.services).toHaveProperty("redis");
  });

  it.each(appServices())("%s runs the same entry point as npm start", (name, service) => {
    const spec = SERVICE_PROCESSES.find((candidate) => candidate.name === roleOf(name))!;
    expect(service.command).toEqual(entryCommand(spec.entry));
    expect(existsSync(spec.entry)).toBe(true);
    expect(service.build).toBe(".");
  });

  it("sets only variables the config schema knows", () => {
    const known = new Set(Object.keys(ENV_SCHEMA.shape));
    for (const [name, service] of appServices()) {
      const variables = Object.keys(service.environment ?? {});
      expect(variables.length).toBeGreaterThan(0);
      for (const variable of variables) expect(known, `${name}: ${variable}`).toContain(variable);
      expect(() => ENV_SCHEMA.parse(service.environment)).not.toThrow();
      expect(service.environment?.REDIS_URL).toBe(COMPOSE_REDIS_URL);
    }
  });

  it("pairs every capture worker with a compression worker of the same HOST_ID on the same data volume", () => {
    const captures = servicesOfRole("capture-worker");
    const compressions = servicesOfRole("compression-worker");
    expect(captures.length).toBeGreaterThanOrEqual(2);
    expect(compressions).toHaveLength(captures.length);
    const hostIds = captures.map(([, service]) => service.environment?.HOST_ID);
    expect(new Set(hostIds).size).toBe(captures.length);
    for (const [name, capture] of captures) {
      const hostId = capture.environment?.HOST_ID;
      expect(hostId, `${name} has a HOST_ID`).toBeTruthy();
      const partner = compressions.find(([, service]) => service.environment?.HOST_ID === hostId);
      expect(partner, `a compression worker for ${hostId}`).toBeDefined();
      expect(dataVolumeOf(partner![1])).toBe(dataVolumeOf(capture));
    }
    const volumes = captures.map(([, service]) => dataVolumeOf(service));
    expect(new Set(volumes).size).toBe(captures.length);
  });

  it("gives the API and webhooks worker a data volume, and declares every volume", () => {
    for (const [name, service] of appServices()) {
      const volume = dataVolumeOf(service);
      expect(volume, `${name} mounts a data volume`).toBeDefined();
      expect(compose.volumes).toHaveProperty(volume!);
    }
  });

  it("runs redis with AOF, noeviction and a volume", () => {
    const redis = compose.services.redis!;
    expect(redis.command?.join(" ")).toContain("--appendonly yes");
    expect(redis.command?.join(" ")).toContain("--maxmemory-policy noeviction");
    expect(redis.volumes).toContain("redis-data:/data");
  });

  it("builds from a Dockerfile that installs the packages the workers need and the guest image", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8");
    for (const pkg of ["qemu-system-x86", "busybox-static", "libzstd-dev"]) expect(dockerfile).toContain(pkg);
    expect(dockerfile).toContain(`scripts/build-image.ts busybox --images-dir ${IMAGES_PATH}`);
  });
});

describe("docker-compose.yml, run as declared", () => {
  let redis: EmbeddedRedis;
  const redisDir = tempDir("compose-redis");
  const volumes = new Map<string, { dir: string; remove: () => void }>();
  const processes: ServiceProcess[] = [];
  let baseUrl = "";
  let apiKey = "";
  const api = (pathAndQuery: string, json?: unknown) =>
    fetch(`${baseUrl}${pathAndQuery}`, {
      method: json === undefined ? "GET" : "POST",
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(json === undefined ? {} : { "content-type": "application/json" }),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });

  /** A declared environment with only deployment-specific values replaced. */
  function mappedEnvironment(service: ComposeService, ports: Map<string, string>): Record<string, string> {
    const volume = dataVolumeOf(service)!;
    if (!volumes.has(volume)) volumes.set(volume, tempDir(`compose-${volume}`));
    const mounts: Record<string, string> = {
      [DATA_MOUNT]: volumes.get(volume)!.dir,
      [IMAGES_PATH]: TEST_IMAGES_DIR,
      [FLEET_SECRET_MOUNT]: fleetSecretFile,
    };
    return Object.fromEntries(
      Object.entries(service.environment ?? {}).map(([name, value]) => {
        if (value === COMPOSE_REDIS_URL) return [name, redis.url];
        if (compose.services[value]) return [name, "127.0.0.1"]; // a service name: everything runs on this machine
        if (mounts[value]) return [name, mounts[value]];
        if (ports.has(value)) return [name, ports.get(value)!];
        return [name, value];
      }),
    );
  }

  // The compose file's secret, as Docker would mount it.
  const fleetSecretFile = path.join(redisDir.dir, "fleet-secret");

  beforeAll(async () => {
    writeFileSync(fleetSecretFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
    redis = await startEmbeddedRedis(findRedisServer()!, redisDir.dir, createLogger("redis", "warn"));
    for (const [name, service] of appServices()) {
      // Published ports ("8080:8080") get a free port on this machine; the variable naming the port follows.
      const ports = new Map<string, string>();
      for (const mapping of service.ports ?? []) ports.set(mapping.split(":").at(-1)!, String(await freePort()));
      const env = mappedEnvironment(service, ports);
      processes.push(startProcess(name, service.command!, env));
      if (roleOf(name) === "api") baseUrl = `http://127.0.0.1:${env.PORT}`;
    }
    await waitForLog(processes.find((process) => process.name === "api")!, '"listening"');
    apiKey = readFileSync(path.join(volumes.get(dataVolumeOf(compose.services.api!)!)!.dir, "api-key"), "utf8").trim();
  }, 120_000);

  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop("SIGTERM")));
    for (const volume of volumes.values()) removeDataDir(volume);
    await redis?.stop(2_000);
    redisDir.remove();
  });

  it("lists both hosts online, snapshots a guest on each, compresses and forks there and across", async () => {
    const hostIds = servicesOfRole("capture-worker").map(([, service]) => service.environment!.HOST_ID!);
    await waitFor(
      async () => {
        const hosts = await jsonOf(await api("/hosts"));
        return hostIds.every((id) =>
          hosts.some?.((host: { id: string; online: boolean }) => host.id === id && host.online),
        )
          ? true
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: "both compose hosts to be online" },
    );

    // Placement spreads two new guests over the two empty hosts.
    const sources = [];
    const snapshots = [];
    const captures: CapturePoint[] = [];
    const guestConsole = (name: string) => apiConsole(api, name);
    for (const name of ["compose-a", "compose-b"]) {
      const response = await api("/instances", { name, size: "256MB" });
      expect(response.status, await response.clone().text()).toBe(201);
      sources.push(await jsonOf(response));
    }
    expect(sources.map((source) => source.host_id).sort()).toEqual([...hostIds].sort());

    for (const source of sources) {
      await waitForTick(api, source.name, 2);
      const before = await consolePoint(guestConsole(source.name));
      const created = await api(`/instances/${source.name}/snapshots`, {
        kind: "Standby",
        compression: { enabled: true, algorithm: "zstd", level: 1 },
      });
      expect(created.status, await created.clone().text()).toBe(201);
      const snapshot = await jsonOf(created);
      expect(snapshot.host_id).toBe(source.host_id);
      const captured = capturedBetween(before, await consolePoint(guestConsole(source.name)));

      // The host's compression worker reads the queue its capture worker writes to.
      await waitFor(
        async () =>
          (await jsonOf(await api(`/snapshots/${snapshot.id}`))).compression_state === "compressed" ? true : undefined,
        { timeoutMs: 45_000, intervalMs: 250, what: `snapshot ${snapshot.id} to be compressed` },
      );

      const forked = await api(`/snapshots/${snapshot.id}/fork`, { name: `${source.name}-fork` });
      expect(forked.status, await forked.clone().text()).toBe(201);
      const fork = await jsonOf(forked);
      expect(fork).toMatchObject({ state: "Running", host_id: source.host_id });
      await waitForResume(guestConsole(fork.name), captured);
      snapshots.push(snapshot);
      captures.push(captured);
    }

    // Across hosts: the first host's snapshot forked on the second (which pulls a replica from the first) ...
    const crossFork = await api(`/snapshots/${snapshots[0].id}/fork`, {
      name: "compose-cross",
      host_id: sources[1].host_id,
    });
    expect(crossFork.status, await crossFork.clone().text()).toBe(201);
    expect((await jsonOf(crossFork)).host_id).toBe(sources[1].host_id);
    await waitForResume(guestConsole("compose-cross"), captures[0]!);

    // ... and exported through the API and imported on the second host.
    const archive = Buffer.from(await (await api(`/snapshots/${snapshots[0].id}/export`)).arrayBuffer());
    const imported = await fetch(`${baseUrl}/snapshots/import?host_id=${sources[1].host_id}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/x-tar" },
      body: archive,
    });
    expect(imported.status, await imported.clone().text()).toBe(201);
    const moved = await jsonOf(imported);
    expect(moved.host_id).toBe(sources[1].host_id);
    const forked = await api(`/snapshots/${moved.id}/fork`, { name: "compose-moved" });
    expect(forked.status, await forked.clone().text()).toBe(201);
    expect((await jsonOf(forked)).host_id).toBe(sources[1].host_id);
  }, 240_000);
});
