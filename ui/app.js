// The dashboard: hosts, queues, instances, snapshots with live compression progress, forks and webhooks,
// refreshed from the API and kept live by GET /events.
import { ApiError, api, followEvents, session } from "./api.js";
import { badge, bytes, el, fillTable, time } from "./dom.js";

const $ = (id) => document.getElementById(id);
/** Compression progress by snapshot id, from snapshot.compression.progress events. */
const progress = new Map();
/** Fork names typed but not yet used, by snapshot id: the tables are rebuilt on every refresh (events, and every 5 s). */
const forkNames = new Map();
let selectedWebhook;
let stopLive = new AbortController();

function showError(error) {
  $("error").textContent = error ? error.message : "";
}

async function run(action) {
  try {
    showError(undefined);
    await action();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut();
    showError(error);
  }
}

function renderHosts(hosts) {
  fillTable($("hosts"), hosts, {
    Host: (host) => el("code", {}, host.id),
    Status: (host) => badge(host.online ? "online" : "offline"),
    Hypervisors: (host) => host.hypervisors.join(", "),
    "Last seen": (host) => time(host.last_seen_at),
  });
}

function renderQueues(queues) {
  fillTable($("queues"), queues, {
    Queue: (queue) => el("code", {}, queue.queue),
    Waiting: (queue) => queue.counts.waiting + queue.counts.prioritized,
    Active: (queue) => queue.counts.active,
    Delayed: (queue) => queue.counts.delayed,
    Failed: (queue) => queue.counts.failed,
    "Oldest waiting": (queue) => (queue.oldestWaitingSeconds ? `${queue.oldestWaitingSeconds.toFixed(1)} s` : "–"),
  });
}

function compressionChoice() {
  const [algorithm, level] = $("compression").value.split(":");
  return algorithm === "none" ? { enabled: false } : { enabled: true, algorithm, level: Number(level) };
}

function renderInstances(instances) {
  const snapshot = (instance) =>
    run(async () => {
      const body = { kind: "Standby", name: `ui-${Date.now().toString(36)}`, compression: compressionChoice() };
      await api(`/instances/${instance.id}/snapshots`, { method: "POST", json: body });
      await refresh();
    });
  fillTable(
    $("instances"),
    instances,
    {
      Name: (instance) => instance.name,
      State: (instance) => badge(instance.state),
      Memory: (instance) => instance.size,
      Host: (instance) => el("code", {}, instance.host_id),
      Created: (instance) => time(instance.created_at),
      "": (instance) =>
        el(
          "button",
          { onclick: () => snapshot(instance), disabled: !["Running", "Standby"].includes(instance.state) },
          "Snapshot",
        ),
    },
    (instance) => ({ "data-instance": instance.name }),
  );
}

function compressionCell(snapshot) {
  const state = badge(snapshot.compression_state);
  if (snapshot.compression_state === "compressed") return [state, " ", el("progress", { value: 1, max: 1 })];
  if (snapshot.compression_state !== "compressing") return state;
  const { done = 0, total = 1 } = progress.get(snapshot.id) ?? {};
  return [state, " ", el("progress", { value: done, max: total, "data-progress": snapshot.id })];
}

function renderSnapshots(snapshots) {
  const fork = (snapshot, input) =>
    run(async () => {
      await api(`/snapshots/${snapshot.id}/fork`, { method: "POST", json: { name: input.value } });
      forkNames.delete(snapshot.id);
      await refresh();
    });
  // What the user is typing survives the rebuild: its text, and the focus and caret if it had them.
  const typing = document.activeElement?.dataset?.forkOf;
  const caret = typing ? document.activeElement.selectionStart : undefined;
  fillTable(
    $("snapshots"),
    snapshots,
    {
      Snapshot: (snapshot) => [snapshot.name ?? "", " ", el("code", {}, snapshot.id)],
      Instance: (snapshot) => snapshot.source_instance_name,
      Kind: (snapshot) => snapshot.kind,
      Compression: compressionCell,
      Stored: (snapshot) => bytes(snapshot.size_bytes),
      Ratio: (snapshot) =>
        snapshot.compressed_size_bytes && snapshot.uncompressed_size_bytes
          ? `${((100 * snapshot.compressed_size_bytes) / snapshot.uncompressed_size_bytes).toFixed(1)} %`
          : "–",
      Downtime: (snapshot) => (snapshot.capture_downtime_ms === null ? "–" : `${snapshot.capture_downtime_ms} ms`),
      Fork: (snapshot) => {
        const input = el("input", {
          value: forkNames.get(snapshot.id) ?? `${snapshot.source_instance_name}-fork`,
          size: 14,
          "aria-label": "fork name",
          "data-fork-of": snapshot.id,
          oninput: () => forkNames.set(snapshot.id, input.value),
        });
        return [input, " ", el("button", { onclick: () => fork(snapshot, input) }, "Fork")];
      },
    },
    (snapshot) => ({ "data-snapshot": snapshot.id }),
  );
  const input = typing && document.querySelector(`input[data-fork-of="${typing}"]`);
  if (input) {
    input.focus();
    input.setSelectionRange(caret, caret);
  }
}

function renderWebhooks(endpoints) {
  fillTable(
    $("webhooks"),
    endpoints,
    {
      URL: (endpoint) => el("code", {}, endpoint.url),
      Events: (endpoint) => endpoint.event_types.join(", "),
      Status: (endpoint) => badge(endpoint.enabled ? "enabled" : "disabled"),
      "Last success": (endpoint) => time(endpoint.last_success_at),
      "": (endpoint) => el("button", { onclick: () => run(() => showDeliveries(endpoint)) }, "Deliveries"),
    },
    (endpoint) => ({ className: endpoint.id === selectedWebhook?.id ? "selected" : "" }),
  );
}

async function showDeliveries(endpoint) {
  selectedWebhook = endpoint;
  const deliveries = await api(`/webhooks/${endpoint.id}/deliveries?limit=50`);
  $("deliveries-title").hidden = false;
  $("deliveries-title").textContent = `Deliveries to ${endpoint.url}`;
  fillTable($("deliveries"), deliveries, {
    Event: (delivery) => delivery.event_type,
    Status: (delivery) => badge(delivery.status),
    Attempts: (delivery) => delivery.attempts,
    "Last answer": (delivery) => delivery.last_status_code ?? delivery.last_error ?? "–",
    Took: (delivery) => (delivery.last_duration_ms === null ? "–" : `${delivery.last_duration_ms} ms`),
    At: (delivery) => time(delivery.updated_at),
  });
}

async function refresh() {
  const [hosts, queues, instances, snapshots, webhooks] = await Promise.all([
    api("/hosts"),
    api("/queues"),
    api("/instances"),
    api("/snapshots"),
    api("/webhooks"),
  ]);
  renderHosts(hosts);
  renderQueues(queues);
  renderInstances(instances);
  renderSnapshots(snapshots);
  renderWebhooks(webhooks);
  if (selectedWebhook) await showDeliveries(selectedWebhook);
}

let refreshTimer;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => run(refresh), 150);
}

function onEvent(event) {
  if (event.type === "snapshot.compression.progress") {
    const id = event.data.snapshot.id;
    progress.set(id, { done: event.data.bytes_done, total: event.data.bytes_total });
    const bar = document.querySelector(`[data-progress="${id}"]`);
    if (bar) {
      bar.max = event.data.bytes_total;
      bar.value = event.data.bytes_done;
      return;
    }
  }
  refreshSoon();
}

function start() {
  $("sign-in").hidden = true;
  for (const id of ["dashboard", "board-link", "sign-out"]) $(id).hidden = false;
  stopLive = new AbortController();
  const live = (on) => {
    $("live").hidden = !on;
  };
  followEvents({ types: "snapshot.*,instance.*" }, onEvent, live, stopLive.signal).catch(() => signOut());
  run(refresh);
  const poll = setInterval(() => run(refresh), 5000);
  stopLive.signal.addEventListener("abort", () => clearInterval(poll));
}

function signOut() {
  stopLive.abort();
  if (session.key) api("/ui/session", { method: "DELETE" }).catch(() => {});
  session.key = null;
  for (const id of ["dashboard", "board-link", "sign-out", "live"]) $(id).hidden = true;
  $("sign-in").hidden = false;
}

$("sign-in").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const key = $("api-key").value.trim();
  try {
    await api("/hosts", { key });
    // The same key, as an HttpOnly cookie scoped to Bull Board's pages.
    await api("/ui/session", { method: "POST", key });
    session.key = key;
    $("sign-in-error").textContent = "";
    start();
  } catch (error) {
    $("sign-in-error").textContent = error.status === 401 ? "That key is not valid." : error.message;
  }
});
$("sign-out").addEventListener("click", signOut);

if (session.key) start();
else $("sign-in").hidden = false;
