// The hosts' truth (their record files) against the read model (what the API serves), compared field by field.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { waitFor } from "./fixtures.ts";

type Resource = Record<string, unknown> & { id: string };

export interface HostTruth {
  instances: Resource[];
  snapshots: Resource[];
}

/** Every instance and snapshot record under a host's data dir (records only: half-written ones do not count). */
export function hostTruth(dataDir: string): HostTruth {
  const records = (kind: "instances" | "snapshots", file: string, key: "instance" | "snapshot") => {
    const dir = path.join(dataDir, kind);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((id) => !id.startsWith(".") && existsSync(path.join(dir, id, file)))
      .map((id) => {
        const value = JSON.parse(readFileSync(path.join(dir, id, file), "utf8"));
        return (key in value ? value[key] : value) as Resource;
      });
  };
  return {
    instances: records("instances", "instance.json", "instance"),
    snapshots: records("snapshots", "snapshot.json", "snapshot"),
  };
}

const byId = (left: Resource, right: Resource) => left.id.localeCompare(right.id);

/** The fields of `truth` as the read model serves them (extra read-time fields of the API are left out). */
function sameFields(served: Resource[], truth: Resource[]): Resource[] {
  const truthById = new Map(truth.map((resource) => [resource.id, resource]));
  return served.map((resource) => {
    const keys = Object.keys(truthById.get(resource.id) ?? resource);
    return Object.fromEntries(keys.map((key) => [key, resource[key]])) as Resource;
  });
}

export type ApiGet = (pathAndQuery: string) => Promise<Response>;

export async function differences(api: ApiGet, dataDirs: string[]): Promise<string[]> {
  const truth = dataDirs.map(hostTruth);
  const wanted = {
    instances: truth.flatMap((host) => host.instances).sort(byId),
    snapshots: truth.flatMap((host) => host.snapshots).sort(byId),
  };
  const problems: string[] = [];
  for (const kind of ["instances", "snapshots"] as const) {
    const response = await api(`/${kind}`);
    if (response.status !== 200) return [`GET /${kind} answered ${response.status}`];
    const served = sameFields(((await response.json()) as Resource[]).sort(byId), wanted[kind]);
    const wantedIds = new Set(wanted[kind].map((resource) => resource.id));
    const servedIds = new Set(served.map((resource) => resource.id));
    for (const id of wantedIds) if (!servedIds.has(id)) problems.push(`${kind}: ${id} missing from the read model`);
    for (const id of servedIds) if (!wantedIds.has(id)) problems.push(`${kind}: ${id} served but not on any host`);
    for (const resource of served) {
      const expected = wanted[kind].find((candidate) => candidate.id === resource.id);
      if (expected && JSON.stringify(expected) !== JSON.stringify(resource)) {
        const fields = Object.keys(expected).filter(
          (key) => JSON.stringify(expected[key]) !== JSON.stringify(resource[key]),
        );
        problems.push(`${kind}: ${resource.id} differs in ${fields.join(", ")}`);
      }
    }
  }
  return problems;
}

/** Waits until the read model equals the hosts' records; throws with the remaining differences. */
export async function expectConverged(api: ApiGet, dataDirs: string[], timeoutMs = 30_000): Promise<void> {
  let last: string[] = [];
  try {
    await waitFor(
      async () => {
        last = await differences(api, dataDirs).catch((error: Error) => [error.message]);
        return last.length === 0 ? true : undefined;
      },
      { timeoutMs, intervalMs: 500, what: "the read model to equal the hosts' records" },
    );
  } catch {
    throw new Error(`read model did not converge within ${timeoutMs} ms:\n  ${last.join("\n  ")}`);
  }
}
