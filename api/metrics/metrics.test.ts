// GET /metrics on real parts: events, webhook outcomes and worker figures appended to the test Redis as workers append them, a
// job waiting on a host's compression queue, and the exposition checked by `promtool check metrics`.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { newId } from "../../shared/ids.ts";
import { reportWorkerFigure } from "../../shared/metrics/worker-figures.ts";
import { reportOutcome } from "../../shared/webhooks/mirror.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { waitFor } from "../../test/helpers/fixtures.ts";
import { announceFakeHost } from "../../test/helpers/hosts.ts";
import { promtoolProblems, sampleValue } from "../../test/helpers/prometheus.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";

describe("GET /metrics", () => {
  let t: TestApp;
  let redis: Redis;
  const scrape = async () => {
    const response = await t.request("/metrics");
    expect(response.status).toBe(200);
    return response.text();
  };

  beforeAll(async () => {
    t = await createTestApp();
    redis = new Redis(t.redisUrl);
    await announceFakeHost(redis, t.prefix, "h1");
    // The metrics readers join their streams at "$": wait until both groups exist before appending.
    await waitFor(
      async () => {
        const text = await scrape();
        return ["events", "webhook-outcomes", "worker-figures"].every(
          (stream) => sampleValue(text, "snapfleet_event_consumer_lag", { stream, group: "metrics" }) !== undefined,
        );
      },
      { timeoutMs: 10_000, what: "the metrics consumer groups" },
    );
  });
  afterAll(async () => {
    redis.disconnect();
    await t.close();
  });

  it("needs the bearer key", async () => {
    expect((await t.request("/metrics", { auth: false })).status).toBe(401);
  });

  it("derives capture and compression figures from the workers' events", async () => {
    const events = new EventStream(redis, t.prefix);
    const source = sampleInstance({ host_id: "h1" });
    const compression = { enabled: true, algorithm: "zstd" as const, level: 3 };
    const snapshot = sampleSnapshot(source, { capture_downtime_ms: 80, compression });
    const subject = subjectOf.snapshot(snapshot.id);
    await events.append("snapshot.created", subject, { snapshot }, { version: 1 });
    await events.append(
      "snapshot.compression.started",
      subject,
      {
        snapshot: { ...snapshot, compression_state: "compressing" },
      },
      { version: 2 },
    );
    await events.append(
      "snapshot.compression.completed",
      subject,
      {
        snapshot: {
          ...snapshot,
          compression_state: "compressed",
          compressed_size_bytes: 25_000_000,
          uncompressed_size_bytes: 100_000_000,
        },
      },
      { version: 3 },
    );
    const labels = { algorithm: "zstd", level: "3" };
    const text = await waitFor(
      async () => {
        const body = await scrape();
        return sampleValue(body, "snapfleet_snapshot_compression_jobs_total", { ...labels, result: "success" }) === 1
          ? body
          : undefined;
      },
      { what: "the compression counter" },
    );
    expect(sampleValue(text, "snapfleet_snapshot_capture_downtime_seconds_count")).toBe(1);
    expect(sampleValue(text, "snapfleet_snapshot_capture_downtime_seconds_sum")).toBeCloseTo(0.08);
    expect(sampleValue(text, "snapfleet_snapshot_compression_duration_seconds_count", labels)).toBe(1);
    expect(sampleValue(text, "snapfleet_snapshot_compression_saved_bytes_sum", labels)).toBe(75_000_000);
    expect(sampleValue(text, "snapfleet_snapshot_compression_ratio_sum", labels)).toBeCloseTo(0.25);
  });

  it("counts webhook delivery attempts by outcome with their latency", async () => {
    const attempt = {
      delivery_id: "d1",
      endpoint_id: "e1",
      attempted_at: new Date().toISOString(),
      sent: true,
      succeeded: false,
      status_code: 500,
      duration_ms: 40,
      error: "HTTP 500",
      next_attempt_at: new Date().toISOString(),
      gone: false,
    };
    await reportOutcome(redis, t.prefix, attempt);
    await reportOutcome(redis, t.prefix, { ...attempt, succeeded: true, status_code: 200, next_attempt_at: null });
    const text = await waitFor(
      async () => {
        const body = await scrape();
        return sampleValue(body, "snapfleet_webhook_delivery_attempts_total", { outcome: "succeeded" }) === 1
          ? body
          : undefined;
      },
      { what: "the delivery counter" },
    );
    expect(sampleValue(text, "snapfleet_webhook_delivery_attempts_total", { outcome: "failed" })).toBe(1);
    expect(sampleValue(text, "snapfleet_webhook_delivery_duration_seconds_count", { outcome: "failed" })).toBe(1);
  });

  it("serves the reference's restore, time-to-running and codec fallback series from the workers' figures", async () => {
    await reportWorkerFigure(redis, t.prefix, {
      kind: "restore_memory_prepare",
      hypervisor: "qemu",
      restore_source: "decompress",
      result: "success",
      seconds: 1.5,
    });
    await reportWorkerFigure(redis, t.prefix, {
      kind: "time_to_running",
      operation: "restore",
      hypervisor: "qemu",
      seconds: 2.25,
    });
    await reportWorkerFigure(redis, t.prefix, {
      kind: "codec_fallback",
      process: "capture-worker",
      reason: "native_unavailable",
    });
    const text = await waitFor(
      async () => {
        const body = await scrape();
        return sampleValue(body, "snapfleet_snapshot_codec_fallbacks_total") === 1 ? body : undefined;
      },
      { what: "the codec fallback counter" },
    );
    const prepare = { hypervisor: "qemu", restore_source: "decompress", result: "success" };
    expect(sampleValue(text, "snapfleet_snapshot_restore_memory_prepare_total", prepare)).toBe(1);
    expect(sampleValue(text, "snapfleet_snapshot_restore_memory_prepare_duration_seconds_sum", prepare)).toBe(1.5);
    const running = { operation: "restore", hypervisor: "qemu" };
    expect(sampleValue(text, "snapfleet_instances_time_to_running_seconds_count", running)).toBe(1);
    expect(sampleValue(text, "snapfleet_instances_time_to_running_seconds_sum", running)).toBe(2.25);
    expect(sampleValue(text, "snapfleet_snapshot_codec_fallbacks_total", { process: "capture-worker" })).toBe(1);
    expect(sampleValue(text, "snapfleet_event_consumer_lag", { stream: "worker-figures", group: "metrics" })).toBe(0);
  });

  it("reports queue depths, the oldest waiting job and how far consumers are behind", async () => {
    await t.jobs.enqueue("snapshot.compress", { snapshot_id: newId() }, { hostId: "h1" });
    const text = await scrape();
    expect(sampleValue(text, "snapfleet_queue_jobs", { queue: "compression-h1", state: "waiting" })).toBe(1);
    expect(sampleValue(text, "snapfleet_queue_jobs", { queue: "host-h1", state: "waiting" })).toBe(0);
    expect(sampleValue(text, "snapfleet_queue_jobs", { queue: "webhooks", state: "active" })).toBe(0);
    expect(sampleValue(text, "snapfleet_queue_oldest_waiting_seconds", { queue: "compression-h1" })).toBeGreaterThan(0);
    expect(sampleValue(text, "snapfleet_snapshot_compression_pending_total", { host: "h1" })).toBe(1);
    expect(sampleValue(text, "snapfleet_snapshot_compression_active_total", { host: "h1" })).toBe(0);
    expect(sampleValue(text, "snapfleet_event_consumer_lag", { stream: "events", group: "read-model" })).toBe(0);
  });

  it("counts HTTP requests by route pattern, never the raw path", async () => {
    await t.request("/snapshots/no-such-snapshot");
    await t.request("/no/such/route");
    const text = await scrape();
    const labels = { method: "GET", route: "/snapshots/:snapshotId", status: "404" };
    expect(sampleValue(text, "snapfleet_http_requests_total", labels)).toBe(1);
    expect(sampleValue(text, "snapfleet_http_request_duration_seconds_count", labels)).toBe(1);
    expect(sampleValue(text, "snapfleet_http_requests_total", { route: "unmatched", status: "404" })).toBe(1);
    expect(text).not.toContain("no-such-snapshot");
  });

  it("parses with promtool check metrics; its only lint findings are the names kept for compatibility", async () => {
    const response = await t.request("/metrics");
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(promtoolProblems(await response.text())).toEqual([]);
  });
});
