// Runs a state-changing job on the host that owns a resource, then waits until the read model shows its result,
// so a GET right after the response sees what the response said.
import { ApiError } from "../shared/errors.ts";
import { type HostStatus, listHosts } from "../shared/hosts.ts";
import type { JobName, JobPayload, JobResult } from "../shared/jobs/catalog.ts";
import { redisCall } from "../shared/redis.ts";
import type { AppDeps } from "./deps.ts";
import { resultWaitMs } from "./middleware/idempotency/detach.ts";

type CommandJob = {
  [Name in JobName]: JobResult<Name> extends { event_id: string } ? Name : never;
}[JobName];

/**
 * Runs the job and waits for its event. A 504 (the host did not answer in time, or the read model did not catch up)
 * does not mean it failed: the host completes or rolls back, and the read model converges to whichever happened.
 * `lookUp` (e.g. "GET /snapshots/<id>") tells the client where to see the outcome. Such a 504 is not retryable: a
 * retry without an Idempotency-Key would run the work a second time.
 */
export async function runHostCommand<Name extends CommandJob>(
  deps: AppDeps,
  hostId: string,
  name: Name,
  payload: JobPayload<Name>,
  lookUp?: string,
): Promise<JobResult<Name>> {
  await assertHostOnline(deps, hostId);
  const seeOutcome = lookUp ? `; it may still complete: ${lookUp} shows the outcome` : "";
  let result: JobResult<Name> & { event_id: string };
  try {
    result = (await deps.jobs.run(name, payload, { hostId, timeoutMs: commandWaitMs(deps) })) as typeof result;
  } catch (error) {
    if (error instanceof ApiError && error.status === 504) {
      throw new ApiError(error.code, `${error.message}${seeOutcome}`, { status: 504, cause: error, retryable: false });
    }
    throw error;
  }
  await waitForReadModel(deps, result.event_id, name, seeOutcome);
  return result;
}

/** Waits until the read model has applied `eventId` (the outcome of `what`); 504 when it does not in time. */
export async function waitForReadModel(deps: AppDeps, eventId: string, what: string, seeOutcome = ""): Promise<void> {
  try {
    await deps.projector.waitFor(eventId, commandWaitMs(deps));
  } catch (error) {
    throw new ApiError("unavailable", `${what} finished but the read model has not caught up yet${seeOutcome}`, {
      status: 504,
      cause: error,
      retryable: false,
    });
  }
}

/** How long a command waits for its job or the read model: longer for one that runs on after its client's 504. */
export function commandWaitMs(deps: AppDeps): number {
  return resultWaitMs(deps.jobResultTimeoutMs);
}

/** Every known host with its online flag, asked of Redis (and kept for reads); 503 when it does not answer in time. */
export async function knownHosts(deps: AppDeps) {
  const askedAt = Date.now();
  const hosts = await redisCall(listHosts(deps.redis, deps.redisPrefix), deps.redisCommandTimeoutMs, "list hosts");
  deps.hostDirectory.update(hosts, askedAt);
  return hosts;
}

/**
 * knownHosts for placing work on `named` (when a request names a host): a host the directory lacks but the read model
 * knows (it owns resources) is a host whose entry Redis lost and whose worker has not announced itself again yet:
 * a retryable 503, not the final 400 an unknown host gets. A retired host stays unknown.
 */
export async function hostsForPlacement(deps: AppDeps, named: string | undefined) {
  const hosts = await knownHosts(deps);
  if (named === undefined || hosts.some((host) => host.id === named)) return hosts;
  const owns = async (table: "instances" | "snapshots") =>
    (await deps.db.selectFrom(table).select("id").where("host_id", "=", named).limit(1).executeTakeFirst()) !==
    undefined;
  const retired = await deps.db
    .selectFrom("retired_hosts")
    .select("host_id")
    .where("host_id", "=", named)
    .executeTakeFirst();
  if (!retired && ((await owns("instances")) || (await owns("snapshots")))) {
    throw new ApiError("unavailable", `host ${named} is offline: it is not in the host directory (not announced yet)`);
  }
  return hosts;
}

export async function onlineHosts(deps: AppDeps) {
  return (await knownHosts(deps)).filter((host) => host.online);
}

/** Work for an offline host fails at once with 503 instead of waiting for a job nobody takes; returns the host. */
export async function assertHostOnline(deps: AppDeps, hostId: string): Promise<HostStatus> {
  const host = (await knownHosts(deps)).find((candidate) => candidate.id === hostId);
  if (!host?.online) {
    const reason = host ? host.offline_reason : "it is not in the host directory";
    throw new ApiError("unavailable", `host ${hostId} is offline: ${reason}`);
  }
  return host;
}
