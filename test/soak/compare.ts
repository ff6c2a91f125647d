// The soak's verdict on convergence: the read model (what the API serves) against the host records on disk,
// resource by resource and field by field, plus what the soak itself was told was created or deleted.
import { isDeepStrictEqual } from "node:util";

export type ResourceKind = "instance" | "snapshot";
type Resource = Record<string, unknown> & { id: string };

export interface Sides {
  /** GET /instances and GET /snapshots, by id. */
  readModel: Map<string, Resource>;
  /** instance.json and snapshot.json's `snapshot`, by id. */
  host: Map<string, Resource>;
  /** Ids the API answered 2xx for creating, with whether the soak deleted them since (204 or 404 on DELETE). */
  acknowledged: Map<string, { kind: ResourceKind; deleted: boolean }>;
  /** Snapshot ids with the hosts that hold a replica (a pulled copy) of them on disk. */
  replicas: Map<string, string[]>;
  kindOf: (id: string) => ResourceKind;
}

export type Problem =
  | { kind: ResourceKind; id: string; verdict: "stuck"; detail: string }
  | { kind: ResourceKind; id: string; verdict: "lost"; detail: string }
  | { kind: ResourceKind; id: string; verdict: "diverged"; detail: string };

/** States a resource passes through but must not stay in once nothing happens to it any more. */
const TRANSIENT_INSTANCE_STATES = new Set(["Created", "Initializing", "Shutdown", "Unknown"]);
const TRANSIENT_COMPRESSION_STATES = new Set(["compressing"]);

function transientState(resource: Resource): string | undefined {
  if (typeof resource.state === "string" && TRANSIENT_INSTANCE_STATES.has(resource.state)) return resource.state;
  const compression = resource.compression_state;
  if (typeof compression === "string" && TRANSIENT_COMPRESSION_STATES.has(compression)) return compression;
  return undefined;
}

/** Fields the API derives at read time (api/host-status.ts): never in a host record, so judged on their own. */
const READ_TIME_FIELDS = new Set(["host_online"]);

/**
 * Fields the two sides disagree on, over every field the API serves (host-only bookkeeping is not compared), except
 * the read-time ones.
 */
export function differingFields(served: Resource, truth: Resource): string[] {
  return Object.keys(served).filter(
    (field) => !READ_TIME_FIELDS.has(field) && !isDeepStrictEqual(served[field], truth[field]),
  );
}

export interface Verdict {
  /** Every id looked at, with its problem if it has one. */
  checked: Array<{ kind: ResourceKind; id: string; problem?: Problem }>;
}

export function compareSides(sides: Sides): Verdict {
  const ids = new Set([
    ...sides.readModel.keys(),
    ...sides.host.keys(),
    ...sides.acknowledged.keys(),
    ...sides.replicas.keys(),
  ]);
  const checked: Verdict["checked"] = [];
  for (const id of [...ids].sort()) {
    const kind = sides.acknowledged.get(id)?.kind ?? sides.kindOf(id);
    const problem = judge(id, kind, sides);
    checked.push({ kind, id, problem });
  }
  return { checked };
}

function judge(id: string, kind: ResourceKind, sides: Sides): Problem | undefined {
  const served = sides.readModel.get(id);
  const truth = sides.host.get(id);
  const deletedBySoak = sides.acknowledged.get(id)?.deleted ?? false;
  const copies = sides.replicas.get(id) ?? [];
  if (copies.length > 0 && (!truth || deletedBySoak)) {
    return { kind, id, verdict: "diverged", detail: `a replica on ${copies.join(", ")} of a deleted snapshot` };
  }
  if (truth && !served) return { kind, id, verdict: "lost", detail: "on the host, missing from the read model" };
  if (!truth && served) {
    return { kind, id, verdict: "diverged", detail: "served by the read model, gone from the host" };
  }
  if (!truth || !served) {
    if (sides.acknowledged.has(id) && !deletedBySoak) {
      return { kind, id, verdict: "lost", detail: "acknowledged as created, on neither side" };
    }
    return undefined;
  }
  if (deletedBySoak) {
    return { kind, id, verdict: "diverged", detail: "deleted (the API said so) but still on the host" };
  }
  const fields = differingFields(served, truth);
  if (fields.length > 0) {
    const detail = fields
      .map((field) => `${field}: read model ${JSON.stringify(served[field])} host ${JSON.stringify(truth[field])}`)
      .join("; ");
    return { kind, id, verdict: "diverged", detail };
  }
  // The soak's hosts are up at the end: a resource served as on an offline host is not converged.
  if (served.host_online === false) return { kind, id, verdict: "diverged", detail: "served with host_online false" };
  const transient = transientState(truth);
  if (transient) return { kind, id, verdict: "stuck", detail: `still ${transient}` };
  return undefined;
}
