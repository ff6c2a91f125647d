import type { Generated } from "kysely";

// Row types of the read model, one interface per table.
export interface ProcessedEventsTable {
  event_id: string;
  stream_id: string;
  applied_at: string;
}

export interface InstancesTable {
  id: string;
  name: string;
  host_id: string;
  state: string;
  created_at: string;
  /** The whole Instance resource as JSON, as of `version`. */
  resource: string;
  /** The record's version on its host: only a newer one replaces this row. */
  version: number;
  deleted_at: string | null;
  /** When the host made this state (its clock; null when it did not say): ghosts.ts compares it with announcements. */
  host_changed_at: string | null;
  /** The announced_at of the first complete announcement of the host that lacked this row (cleared by any change). */
  missing_since: string | null;
  /** Set with deleted_at when two complete announcements of the host lacked the row: a record of it brings it back. */
  vanished_at: string | null;
}

export interface SnapshotsTable {
  id: string;
  name: string | null;
  kind: string;
  source_instance_id: string;
  host_id: string;
  compression_state: string;
  created_at: string;
  /** The whole Snapshot resource as JSON, as of `version`. */
  resource: string;
  /** The record's version on its host: only a newer one replaces this row. */
  version: number;
  deleted_at: string | null;
  /** When the host made this state (its clock; null when it did not say): ghosts.ts compares it with announcements. */
  host_changed_at: string | null;
  /** The announced_at of the first complete announcement of the host that lacked this row (cleared by any change). */
  missing_since: string | null;
  /** Set with deleted_at when two complete announcements of the host lacked the row: a record of it brings it back. */
  vanished_at: string | null;
}

/** A part of a host announcement, kept until the whole announcement is in (then it decides what vanished). */
export interface AnnouncementPartsTable {
  announcement_id: string;
  part: number;
  parts: number;
  host_id: string;
  announced_at: string;
  /** JSON array of `instance:<id>` / `snapshot:<id>`: the records and tombstones this part announces. */
  resource_keys: string;
}

export interface SnapshotTagsTable {
  snapshot_id: string;
  key: string;
  value: string;
}

export interface NameReservationsTable {
  scope: string;
  name: string;
  resource_id: string;
  created_at: Generated<string>;
  /** Set when the API stopped waiting for the creating job: released after this if no resource showed up. */
  pending_until: string | null;
}

export interface WebhookEndpointsTable {
  id: string;
  url: string;
  description: string;
  /** JSON array of event type patterns (exact names or `prefix.*`). */
  event_types: string;
  enabled: number;
  disabled_reason: string | null;
  /** SecretBox-sealed signing secrets (current and, during a rotation, previous). */
  sealed_secrets: string;
  created_at: string;
  updated_at: string;
  last_success_at: string | null;
  /** The first failed attempt since the last success; the endpoint is disabled when it is too long ago. */
  failing_since: string | null;
}

export interface WebhookDeliveriesTable {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  stream_id: string;
  /** The exact JSON body sent, kept so a manual retry sends the same bytes. */
  body: string;
  status: "pending" | "succeeded" | "failed";
  attempts: number;
  manual_retries: number;
  last_status_code: number | null;
  last_duration_ms: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

export interface WebhookDeliveryAttemptsTable {
  /** The outcome's id in the outcomes stream: applying one twice is a no-op. */
  outcome_id: string;
  delivery_id: string;
  attempted_at: string;
  succeeded: number;
  status_code: number | null;
  duration_ms: number | null;
  error: string | null;
}

export interface IdempotencyKeysTable {
  /** SHA-256 of the bearer token: one API key never sees another's responses. */
  api_key_hash: string;
  idempotency_key: string;
  /** SHA-256 of method, path and canonical body of the first request with this key. */
  fingerprint: string;
  /** Null while the first request is in flight. */
  response_status: number | null;
  response_content_type: string | null;
  response_body: string | null;
  created_at: string;
  expires_at: string;
  /** The API process running it while in flight (its PROCESS_ID); null in rows from before migration 0010. */
  owner: string | null;
  /** Random per claim, kept by a takeover: the ids of the resources the request makes derive from it. */
  seed: string | null;
  /** The host the request placed its resource on, once it chose (migration 0011): a takeover places it there too. */
  host_id: string | null;
}

export interface Database {
  processed_events: ProcessedEventsTable;
  instances: InstancesTable;
  snapshots: SnapshotsTable;
  snapshot_tags: SnapshotTagsTable;
  announcement_parts: AnnouncementPartsTable;
  name_reservations: NameReservationsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_delivery_attempts: WebhookDeliveryAttemptsTable;
  idempotency_keys: IdempotencyKeysTable;
  snapshot_schedules: SnapshotSchedulesTable;
  retired_hosts: RetiredHostsTable;
}

/** A host an operator retired (DELETE /hosts/{id}): its instances read lost, its stored snapshots went to others. */
export interface RetiredHostsTable {
  host_id: string;
  retired_at: string;
}

export interface SnapshotSchedulesTable {
  instance_id: string;
  /** New at each create: the snapshots a schedule made carry it (tag snapfleet.schedule), retention sees only those. */
  schedule_id: string;
  interval: string;
  interval_ms: number;
  /** JSON {max_count?, max_age?}. */
  retention: string;
  /** JSON tags given to every snapshot the schedule makes. */
  metadata: string;
  name_prefix: string | null;
  next_run_at: string;
  last_run_at: string | null;
  last_snapshot_id: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}
