// Which operation may run in which instance state: the one table both the API and the host agent consult.
import { ApiError } from "../errors.ts";
import type { InstanceState } from "../schemas/instance.ts";

export const INSTANCE_OPERATIONS = {
  stop: ["Created", "Initializing", "Running", "Paused", "Shutdown", "Standby", "Unknown"],
  start: ["Stopped"],
  standby: ["Running"],
  restore: ["Standby"],
  delete: ["Created", "Initializing", "Running", "Paused", "Shutdown", "Stopped", "Standby", "Unknown"],
  logs: ["Created", "Initializing", "Running", "Paused", "Shutdown", "Stopped", "Standby", "Unknown"],
  snapshotStandby: ["Running", "Standby"],
  snapshotStopped: ["Stopped"],
  restoreSnapshot: ["Stopped", "Standby", "Unknown", "Created", "Shutdown"],
} as const satisfies Record<string, readonly InstanceState[]>;

export type InstanceOperation = keyof typeof INSTANCE_OPERATIONS;

const DESCRIPTIONS: Record<InstanceOperation, string> = {
  stop: "stop",
  start: "start",
  standby: "put in standby",
  restore: "restore",
  delete: "delete",
  logs: "read logs of",
  snapshotStandby: "take a Standby snapshot of",
  snapshotStopped: "take a Stopped snapshot of",
  restoreSnapshot: "restore a snapshot onto",
};

export function isOperationAllowed(operation: InstanceOperation, state: InstanceState): boolean {
  return (INSTANCE_OPERATIONS[operation] as readonly InstanceState[]).includes(state);
}

/** Throws a 409 `invalid_state` that says what is allowed. */
export function assertOperationAllowed(operation: InstanceOperation, instance: { name: string; state: InstanceState }) {
  if (isOperationAllowed(operation, instance.state)) return;
  const allowed = INSTANCE_OPERATIONS[operation].join(", ");
  throw new ApiError(
    "invalid_state",
    `cannot ${DESCRIPTIONS[operation]} instance ${instance.name} in state ${instance.state} (allowed from: ${allowed})`,
  );
}
