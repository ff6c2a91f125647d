// POST /instances/{id}/fork: a new instance from an instance's current state, through a transient snapshot on
// the owning host. Standby and Stopped sources fork directly; a Running one only with from_running: true.
import { createRoute } from "@hono/zod-openapi";
import { ApiError } from "../../shared/errors.ts";
import { FORK_INSTANCE_BODY, INSTANCE_SCHEMA, type Instance } from "../../shared/schemas/instance.ts";
import type { SnapshotKind, TargetState } from "../../shared/schemas/snapshot.ts";
import { runHostCommand } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { presentInstance } from "../host-status.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { withNameReservation } from "../read-model/names.ts";
import { newResourceId } from "../resource-ids.ts";
import { instanceNameReservation, requireInstance } from "./instances.ts";
import { INSTANCE_PATH } from "./params.ts";
import { prepareFork, prepareSnapshot, targetStateFor } from "./snapshots.ts";

/** What a source state forks through: the snapshot kind captured and the fork's default target state. */
const FORKABLE: Partial<Record<Instance["state"], { kind: SnapshotKind; target: TargetState }>> = {
  Running: { kind: "Standby", target: "Running" },
  Standby: { kind: "Standby", target: "Standby" },
  Stopped: { kind: "Stopped", target: "Stopped" },
};

export const forkInstanceRoute = createRoute({
  method: "post",
  path: "/instances/{id}/fork",
  summary: "Fork an instance from Stopped, Standby, or Running (with from_running: true)",
  description:
    "Captures the source into a transient snapshot on its host (announced as snapshot.created, then " +
    "snapshot.deleted once the fork is up), forks from it and deletes it. A Running source is paused only while " +
    "its memory and device state are captured, and is Running again afterwards.",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    body: { content: { "application/json": { schema: FORK_INSTANCE_BODY } }, required: true },
  },
  responses: { 201: jsonResponse(INSTANCE_SCHEMA, "The forked instance"), ...errorResponses(400, 404, 409, 501, 504) },
});

export function registerInstanceForkRoutes(app: App, deps: AppDeps): void {
  app.openapi(forkInstanceRoute, async (c) => {
    const body = c.req.valid("json");
    const source = await requireInstance(deps, c.req.valid("param").id);
    const forkable = FORKABLE[source.state];
    if (!forkable) {
      throw new ApiError("invalid_state", `cannot fork instance ${source.name} in state ${source.state}`);
    }
    if (source.state === "Running" && !body.from_running) {
      throw new ApiError("invalid_state", `instance ${source.name} is Running: pass from_running: true to fork it`);
    }
    const target = targetStateFor(forkable.kind, body.target_state, forkable.target);
    const id = newResourceId();
    const snapshot = prepareSnapshot(source, {
      id: newResourceId(),
      kind: forkable.kind,
      name: null,
      tags: { "snapfleet.transient": "instance-fork", "snapfleet.fork": id },
      compression: { enabled: false },
    });
    const instance = prepareFork(source, {
      id,
      name: body.name,
      hypervisor: source.hypervisor,
      host_id: source.host_id,
    });
    const result = await withNameReservation(deps.db, instanceNameReservation(body.name, id), () =>
      runHostCommand(
        deps,
        source.host_id,
        "instance.fork",
        {
          instance_id: source.id,
          from_running: body.from_running ?? false,
          snapshot,
          instance,
          target_state: target,
        },
        `GET /instances/${id}`,
      ),
    );
    return c.json(presentInstance(deps, result.instance), 201);
  });
}
