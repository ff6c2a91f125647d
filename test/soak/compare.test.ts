import { describe, expect, it } from "vitest";
import { compareSides, type ResourceKind } from "./compare.ts";

const instance = (id: string, fields: Record<string, unknown> = {}) => ({ id, name: id, state: "Running", ...fields });

function sides(
  readModel: Array<ReturnType<typeof instance>>,
  host: Array<ReturnType<typeof instance>>,
  acknowledged: Array<[string, boolean]> = [],
  replicas: Array<[string, string[]]> = [],
) {
  return {
    readModel: new Map(readModel.map((resource) => [resource.id, resource])),
    host: new Map(host.map((resource) => [resource.id, resource])),
    acknowledged: new Map(acknowledged.map(([id, deleted]) => [id, { kind: "instance" as ResourceKind, deleted }])),
    replicas: new Map(replicas),
    kindOf: (): ResourceKind => "instance",
  };
}

const verdicts = (input: ReturnType<typeof sides>) =>
  compareSides(input).checked.map(({ id, problem }) => [id, problem?.verdict ?? "ok"]);

describe("compareSides", () => {
  it("passes equal resources and resources deleted on both sides", () => {
    expect(
      verdicts(
        sides(
          [instance("a")],
          [instance("a")],
          [
            ["a", false],
            ["gone", true],
          ],
        ),
      ),
    ).toEqual([
      ["a", "ok"],
      ["gone", "ok"],
    ]);
  });

  it("names lost, diverged and stuck resources, field by field", () => {
    const input = sides(
      [
        instance("served-only"),
        instance("differs", { state: "Running", tags: { a: "1" } }),
        instance("busy", { state: "Initializing" }),
      ],
      [
        instance("host-only"),
        instance("differs", { state: "Stopped", tags: { a: "1" } }),
        instance("busy", { state: "Initializing" }),
      ],
      [
        ["vanished", false],
        ["host-only", false],
      ],
    );
    expect(verdicts(input)).toEqual([
      ["busy", "stuck"],
      ["differs", "diverged"],
      ["host-only", "lost"],
      ["served-only", "diverged"],
      ["vanished", "lost"],
    ]);
    const differs = compareSides(input).checked.find(({ id }) => id === "differs")!;
    expect(differs.problem!.detail).toBe('state: read model "Running" host "Stopped"');
  });

  it("judges host_online, which only the API derives, on its own rather than against the host record", () => {
    const online = instance("online", { host_online: true });
    expect(verdicts(sides([online], [instance("online")]))).toEqual([["online", "ok"]]);
    const offline = sides([instance("offline", { host_online: false })], [instance("offline")]);
    expect(verdicts(offline)).toEqual([["offline", "diverged"]]);
    expect(compareSides(offline).checked[0]!.problem!.detail).toBe("served with host_online false");
  });

  it("flags a resource the API deleted that the host still has", () => {
    expect(verdicts(sides([], [instance("kept")], [["kept", true]]))).toEqual([["kept", "lost"]]);
    expect(verdicts(sides([instance("kept")], [instance("kept")], [["kept", true]]))).toEqual([["kept", "diverged"]]);
  });

  it("flags a replica left on another host after its snapshot was deleted, and passes one of a kept snapshot", () => {
    const kept = instance("kept");
    expect(verdicts(sides([kept], [kept], [["kept", false]], [["kept", ["host-b"]]]))).toEqual([["kept", "ok"]]);
    const leaked = sides([], [], [["gone", true]], [["gone", ["host-b"]]]);
    expect(verdicts(leaked)).toEqual([["gone", "diverged"]]);
    expect(compareSides(leaked).checked[0]!.problem!.detail).toBe("a replica on host-b of a deleted snapshot");
  });
});
