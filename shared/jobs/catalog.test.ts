import { describe, expect, it } from "vitest";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { newId } from "../ids.ts";
import { JOB_CATALOG, type JobName } from "./catalog.ts";

const instance = sampleInstance();
const snapshot = sampleSnapshot(instance);

/** A valid payload of each job that carries ids, and the paths to each id in it. */
const PAYLOADS: Partial<Record<JobName, { payload: Record<string, unknown>; ids: string[][] }>> = {
  "instance.create": { payload: { instance }, ids: [["instance", "id"]] },
  "instance.stop": { payload: { instance_id: newId() }, ids: [["instance_id"]] },
  "instance.delete": { payload: { instance_id: newId() }, ids: [["instance_id"]] },
  "instance.logs": { payload: { instance_id: newId(), tail: 5 }, ids: [["instance_id"]] },
  "snapshot.capture": {
    payload: { instance_id: instance.id, snapshot },
    ids: [["instance_id"], ["snapshot", "id"], ["snapshot", "source_instance_id"]],
  },
  "snapshot.fork": {
    payload: { snapshot_id: snapshot.id, instance, target_state: "Running" },
    ids: [["snapshot_id"], ["instance", "id"]],
  },
  "snapshot.restore": {
    payload: { snapshot_id: snapshot.id, instance_id: instance.id, target_state: "Stopped" },
    ids: [["snapshot_id"], ["instance_id"]],
  },
  "snapshot.delete": { payload: { snapshot_id: snapshot.id }, ids: [["snapshot_id"]] },
  "snapshot.compress": { payload: { snapshot_id: snapshot.id }, ids: [["snapshot_id"]] },
  "instance.fork": {
    payload: { instance_id: instance.id, from_running: true, snapshot, instance, target_state: "Running" },
    ids: [["instance_id"], ["snapshot", "id"], ["snapshot", "source_instance_id"], ["instance", "id"]],
  },
  "snapshot.replicate": {
    payload: { snapshot_id: snapshot.id, owner_host_id: "host-a" },
    ids: [["snapshot_id"], ["owner_host_id"]],
  },
  "snapshot.drop-replica": { payload: { snapshot_id: snapshot.id }, ids: [["snapshot_id"]] },
  "snapshot.recompress": {
    payload: { snapshot_id: snapshot.id, compression: { enabled: true, algorithm: "zstd", level: 1 } },
    ids: [["snapshot_id"]],
  },
  "instance.standby.compress": {
    payload: { instance_id: instance.id, algorithm: "lz4", level: 1 },
    ids: [["instance_id"]],
  },
  "snapshot.schedule.run": { payload: { instance_id: instance.id }, ids: [["instance_id"]] },
};

const HOSTILE_IDS = ["../../x", "..", "", "/etc", `${newId()}/..`, "A".repeat(24), `${newId()}\n`];

function withValue(payload: Record<string, unknown>, pathToId: string[], value: string): unknown {
  const copy = structuredClone(payload);
  let node = copy as Record<string, unknown>;
  for (const key of pathToId.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[pathToId.at(-1)!] = value;
  return copy;
}

describe("job payload ids", () => {
  for (const [name, { payload, ids }] of Object.entries(PAYLOADS)) {
    const schema = JOB_CATALOG[name as JobName].payload;
    it(`${name}: accepts resource ids and refuses anything that could name another path`, () => {
      expect(schema.safeParse(payload).success).toBe(true);
      for (const pathToId of ids) {
        for (const hostile of HOSTILE_IDS) {
          const parsed = schema.safeParse(withValue(payload, pathToId, hostile));
          expect(parsed.success, `${pathToId.join(".")} = ${JSON.stringify(hostile)}`).toBe(false);
        }
      }
    });
  }
});
