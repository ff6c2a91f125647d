// A list response written from stored snapshot text is byte for byte what presenting the parsed snapshots writes:
// host online, offline, not in the directory, and the directory unknown.
import { describe, expect, it } from "vitest";
import type { HostStatus } from "../shared/hosts.ts";
import { sampleInstance, sampleSnapshot } from "../test/helpers/resources.ts";
import type { AppDeps } from "./deps.ts";
import { presentSnapshots, presentStoredSnapshots } from "./host-status.ts";

const online = sampleInstance({ host_id: "host-a" });
const offline = sampleInstance({ host_id: "host-b" });
const gone = sampleInstance({ host_id: "host-c" });
const snapshots = [
  sampleSnapshot(online, { name: "a", tags: { team: "red" } }),
  sampleSnapshot(offline, { compression: { enabled: true, algorithm: "zstd", level: 3 } }),
  sampleSnapshot(gone, { name: 'quote " and \\ and \u2028' }),
];
const stored = snapshots.map((snapshot) => ({ host_id: snapshot.host_id, resource: JSON.stringify(snapshot) }));

/** Just what presenting reads of AppDeps: the host directory's lookup. */
function depsWith(hosts: Record<string, Pick<HostStatus, "online" | "offline_reason">> | undefined): AppDeps {
  const lookup = hosts && ((hostId: string) => hosts[hostId] as HostStatus | undefined);
  return { hostDirectory: { lookup: () => lookup } } as unknown as AppDeps;
}

describe("presentStoredSnapshots", () => {
  it("writes what presentSnapshots writes, whatever the hosts' state", () => {
    for (const deps of [
      depsWith({ "host-a": { online: true, offline_reason: null }, "host-b": { online: false, offline_reason: "x" } }),
      depsWith({}),
      depsWith(undefined),
    ]) {
      expect(presentStoredSnapshots(deps, stored)).toBe(JSON.stringify(presentSnapshots(deps, snapshots)));
    }
    expect(presentStoredSnapshots(depsWith({}), [])).toBe("[]");
  });
});
