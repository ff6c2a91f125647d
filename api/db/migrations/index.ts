// Versioned migrations, applied in key order; never edit one that has shipped, add the next.
import type { Migration } from "kysely";
import * as initial from "./0001_initial.ts";
import * as readModel from "./0002_read_model.ts";
import * as webhooks from "./0003_webhooks.ts";
import * as versions from "./0004_versions.ts";
import * as idempotencyKeys from "./0005_idempotency_keys.ts";
import * as retention from "./0006_retention.ts";
import * as schedules from "./0007_schedules.ts";
import * as liveIndexes from "./0008_live_indexes.ts";
import * as announcements from "./0009_announcements.ts";
import * as idempotencyOwner from "./0010_idempotency_owner.ts";
import * as idempotencyPlacement from "./0011_idempotency_placement.ts";
import * as retiredHosts from "./0012_retired_hosts.ts";
import * as digests from "./0013_digests.ts";

export const MIGRATIONS: Record<string, Migration> = {
  "0001_initial": initial,
  "0002_read_model": readModel,
  "0003_webhooks": webhooks,
  "0004_versions": versions,
  "0005_idempotency_keys": idempotencyKeys,
  "0006_retention": retention,
  "0007_schedules": schedules,
  "0008_live_indexes": liveIndexes,
  "0009_announcements": announcements,
  "0010_idempotency_owner": idempotencyOwner,
  "0011_idempotency_placement": idempotencyPlacement,
  "0012_retired_hosts": retiredHosts,
  "0013_digests": digests,
};
