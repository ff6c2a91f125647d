// GET /capabilities: what this server and its online hosts support, from the driver seam, the hosts' own
// announcements in Redis and the codec's level table.
import { execFile } from "node:child_process";
import { arch, platform } from "node:os";
import { promisify } from "node:util";
import { createRoute } from "@hono/zod-openapi";
import { COMPRESSION_ALGORITHMS, LEVELS_BY_ALGORITHM } from "../../shared/codec/options.ts";
import { implementedRuntimes } from "../../shared/hypervisor/registry.ts";
import { CAPABILITIES_SCHEMA, type Capabilities } from "../../shared/schemas/capabilities.ts";
import { SNAPSHOT_KINDS } from "../../shared/schemas/snapshot.ts";
import { knownHosts } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { REFERENCE_API_VERSION } from "./docs.ts";

const DEFAULT_RUNTIME = "qemu";
const SERVER_FEATURES = ["instances", "images", "logs"];
const GO_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };
/** This machine's architecture as Go names it (the reference server's spelling). */
const GO_ARCH_NAME = GO_ARCH[arch()] ?? arch();

export const capabilitiesRoute = createRoute({
  method: "get",
  path: "/capabilities",
  summary: "What this server and its hosts support",
  description:
    "Runtimes (a runtime is available when an online host runs it), server features, and, as our extension, " +
    "snapshot kinds, compression algorithms with their level ranges, and the hosts.",
  tags: ["Capabilities"],
  security: BEARER_SECURITY,
  responses: { 200: jsonResponse(CAPABILITIES_SCHEMA, "Capabilities"), ...errorResponses() },
});

export function registerCapabilityRoutes(app: App, deps: AppDeps): void {
  app.openapi(capabilitiesRoute, async (c) => c.json(await capabilities(deps), 200));
}

async function capabilities(deps: AppDeps): Promise<Capabilities> {
  const hosts = await knownHosts(deps);
  const online = new Set(hosts.filter((host) => host.online).flatMap((host) => host.hypervisors));
  const runtimes = implementedRuntimes()
    .map((runtime) => ({ name: runtime.name, available: online.has(runtime.name), features: [...runtime.features] }))
    .sort((left, right) => left.name.localeCompare(right.name));
  const platformName = `linux/${GO_ARCH_NAME}`;
  return {
    server: { api_version: REFERENCE_API_VERSION, version: await serverVersion() },
    host: { os: platform(), arch: GO_ARCH_NAME },
    default_runtime: { name: DEFAULT_RUNTIME, available: online.has(DEFAULT_RUNTIME) },
    runtimes,
    features: SERVER_FEATURES,
    images: { default_platform: platformName, platforms: [platformName] },
    network: { model: "bridge", guest_to_guest: false },
    snapshots: {
      kinds: [...SNAPSHOT_KINDS],
      compression: COMPRESSION_ALGORITHMS.map((name) => ({
        name,
        min_level: LEVELS_BY_ALGORITHM[name].min,
        max_level: LEVELS_BY_ALGORITHM[name].max,
        default_level: LEVELS_BY_ALGORITHM[name].default,
      })),
    },
    hosts: hosts.map((host) => ({ id: host.id, online: host.online, hypervisors: host.hypervisors })),
  };
}

let version: Promise<string> | undefined;

/** The short git revision of this build ("-dirty" with uncommitted changes), or "unknown" outside a checkout. */
function serverVersion(): Promise<string> {
  version ??= (async () => {
    const run = promisify(execFile);
    const cwd = new URL("../..", import.meta.url).pathname;
    const revision = (await run("git", ["rev-parse", "--short", "HEAD"], { cwd })).stdout.trim();
    const dirty = (await run("git", ["status", "--porcelain", "--untracked-files=no"], { cwd })).stdout.trim();
    return dirty ? `${revision}-dirty` : revision;
  })().catch(() => "unknown");
  return version;
}
