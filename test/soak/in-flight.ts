// What the mid-run Redis data loss must not lose, set up before the pipelines start and checked at the end: a
// snapshot schedule (it fires again after the flush) and a webhook subscription (no delivery is left pending).
// Replicas need a second host: this single-host soak does not cover them (test/replicas.test.ts does).
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.ts";

export interface InFlightClient {
  baseUrl: string;
  apiKey: () => string;
  log: (line: string) => void;
}

export interface InFlight {
  /** The checks, each true when it held; waits up to `timeoutMs` for them to hold. */
  verify(
    flushedAt: number | undefined,
    timeoutMs: number,
  ): Promise<Array<{ name: string; ok: boolean; detail: string }>>;
  close(): Promise<void>;
}

const SCHEDULE_TAG = "snapfleet.schedule";

// biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field, not typed here
type Json = any;

export async function startInFlight(client: InFlightClient, run: string): Promise<InFlight> {
  const receiver: WebhookReceiver = await startWebhookReceiver();
  const api = async (method: string, path: string, body?: unknown) => {
    for (;;) {
      const response = await fetch(`${client.baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${client.apiKey()}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).catch(() => undefined);
      if (response && response.status < 500) return { status: response.status, json: (await response.json()) as Json };
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  };
  const hook = await api("POST", "/webhooks", { url: receiver.url, event_types: ["instance.*", "snapshot.created"] });
  if (hook.status !== 201) throw new Error(`webhook subscription: ${hook.status} ${JSON.stringify(hook.json)}`);
  const name = `soak-${run}-scheduled`;
  const created = await api("POST", "/instances", { name, size: "128MB" });
  if (created.status !== 201) throw new Error(`scheduled instance: ${created.status} ${JSON.stringify(created.json)}`);
  const schedule = await api("PUT", `/instances/${name}/snapshot-schedule`, {
    interval: "1m",
    retention: { max_count: 3 },
  });
  if (schedule.status !== 200) throw new Error(`schedule: ${schedule.status} ${JSON.stringify(schedule.json)}`);
  client.log(`in flight: webhook ${hook.json.id} to ${receiver.url}, a 1m schedule on ${name}`);

  const checks = async (flushedAt: number | undefined) => {
    const snapshots = await api("GET", "/snapshots");
    const own = (
      snapshots.json as Array<{ source_instance_id: string; created_at: string; tags: Record<string, string> }>
    ).filter((snapshot) => snapshot.source_instance_id === created.json.id && SCHEDULE_TAG in snapshot.tags);
    const after = own.filter((snapshot) => flushedAt !== undefined && Date.parse(snapshot.created_at) > flushedAt);
    const pending = await api("GET", `/webhooks/${hook.json.id}/deliveries?status=pending`);
    return [
      {
        name: "schedule fires after the Redis data loss",
        ok: after.length > 0,
        detail: `${own.length} scheduled snapshots, ${after.length} after the flush`,
      },
      {
        name: "no webhook delivery left pending",
        ok: pending.status === 200 && pending.json.length === 0,
        detail: `${pending.json.length ?? "?"} pending, ${receiver.requests.length} received`,
      },
    ];
  };
  return {
    async verify(flushedAt, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const result = await checks(flushedAt);
        if (result.every((check) => check.ok) || Date.now() >= deadline) return result;
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      }
    },
    close: () => receiver.close(),
  };
}
