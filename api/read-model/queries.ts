// Reads of the read model: what the list and get endpoints serve. Nothing here asks Redis or a worker.
import { sql } from "kysely";
import { ID_PATTERN } from "../../shared/ids.ts";
import type { Instance, InstanceState } from "../../shared/schemas/instance.ts";
import type { Snapshot, SnapshotKind } from "../../shared/schemas/snapshot.ts";
import type { Db } from "../db/database.ts";

/** An instance by id or by name (ids win); deleted ones are not found. */
export async function findInstance(db: Db, idOrName: string): Promise<Instance | undefined> {
  let query = db.selectFrom("instances").select("resource").where("deleted_at", "is", null);
  query = ID_PATTERN.test(idOrName)
    ? query.where((eb) => eb.or([eb("id", "=", idOrName), eb("name", "=", idOrName)]))
    : query.where("name", "=", idOrName);
  const rows = await query.orderBy(sql`id = ${idOrName}`, "desc").limit(1).execute();
  return rows[0] ? (JSON.parse(rows[0].resource) as Instance) : undefined;
}

/** Up to `limit` live instances whose id starts with `prefix` (lowercase alphanumerics only: no LIKE wildcards). */
export async function findInstancesByIdPrefix(db: Db, prefix: string, limit: number): Promise<Instance[]> {
  if (!ID_PREFIX_PATTERN.test(prefix)) return [];
  const rows = await db
    .selectFrom("instances")
    .select("resource")
    .where("deleted_at", "is", null)
    .where("id", "like", `${prefix}%`)
    .orderBy("id")
    .limit(limit)
    .execute();
  return rows.map((row) => JSON.parse(row.resource) as Instance);
}

const ID_PREFIX_PATTERN = /^[a-z][a-z0-9]{0,22}$/;

export async function listInstances(
  db: Db,
  filters: { state?: InstanceState; tags?: Record<string, string> },
): Promise<Instance[]> {
  let query = db.selectFrom("instances").select("resource").where("deleted_at", "is", null);
  if (filters.state) query = query.where("state", "=", filters.state);
  const rows = await query.orderBy("created_at").orderBy("id").execute();
  const instances = rows.map((row) => JSON.parse(row.resource) as Instance);
  const wanted = Object.entries(filters.tags ?? {});
  return instances.filter((instance) => wanted.every(([key, value]) => instance.tags[key] === value));
}

/** How many live instances each host holds (hosts without any are absent). */
export async function instanceCountsByHost(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom("instances")
    .select((eb) => ["host_id", eb.fn.countAll<number>().as("count")])
    .where("deleted_at", "is", null)
    .groupBy("host_id")
    .execute();
  return new Map(rows.map((row) => [row.host_id, Number(row.count)]));
}

/** The last known state of an instance, deleted or not (snapshots keep their source's host after it is gone). */
export async function findInstanceIncludingDeleted(db: Db, id: string): Promise<Instance | undefined> {
  const row = await db.selectFrom("instances").select("resource").where("id", "=", id).executeTakeFirst();
  return row ? (JSON.parse(row.resource) as Instance) : undefined;
}

export async function findSnapshot(db: Db, id: string): Promise<Snapshot | undefined> {
  const row = await db
    .selectFrom("snapshots")
    .select("resource")
    .where("id", "=", id)
    .where("deleted_at", "is", null)
    .executeTakeFirst();
  return row ? (JSON.parse(row.resource) as Snapshot) : undefined;
}

export interface SnapshotFilters {
  kind?: SnapshotKind;
  name?: string;
  source_instance_id?: string;
  tags?: Record<string, string>;
}

export interface SnapshotPage {
  snapshots: Snapshot[];
  /** Pass as `cursor` to get the next page; null on the last page. */
  nextCursor: string | null;
}

/** Up to `limit` rows (all without), after the position `after` in list order. */
export interface PageRequest {
  limit?: number;
  after?: { createdAt: string; id: string };
}

/** A snapshot as stored: its resource's JSON text (never with `host_online`, apply.ts) and its host. */
export interface StoredSnapshot {
  host_id: string;
  resource: string;
}

/** Oldest first, by (created_at, id). Tag filters are exact, case-sensitive and ANDed. */
export async function listSnapshots(db: Db, filters: SnapshotFilters, page: PageRequest): Promise<SnapshotPage> {
  const { rows, nextCursor } = await listStoredSnapshots(db, filters, page);
  return { snapshots: rows.map((row) => JSON.parse(row.resource) as Snapshot), nextCursor };
}

/** listSnapshots without parsing: what a list response is written from. */
export async function listStoredSnapshots(
  db: Db,
  filters: SnapshotFilters,
  page: PageRequest,
): Promise<{ rows: StoredSnapshot[]; nextCursor: string | null }> {
  const rows = await snapshotPageQuery(db, filters, page).execute();
  const hasMore = page.limit !== undefined && rows.length > page.limit;
  const pageRows = hasMore ? rows.slice(0, page.limit) : rows;
  const last = pageRows.at(-1);
  return {
    rows: pageRows,
    nextCursor: hasMore && last ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null,
  };
}

/** The query behind listSnapshots (one row more than the limit: whether a next page exists). */
export function snapshotPageQuery(db: Db, filters: SnapshotFilters, page: PageRequest) {
  let query = db
    .selectFrom("snapshots")
    .select(["id", "created_at", "host_id", "resource"])
    .where("deleted_at", "is", null);
  if (filters.kind) query = query.where("kind", "=", filters.kind);
  if (filters.name !== undefined) query = query.where("name", "=", filters.name);
  if (filters.source_instance_id !== undefined)
    query = query.where("source_instance_id", "=", filters.source_instance_id);
  // Each tag selects its snapshots through the (key, value) index, rather than probing every snapshot in list order.
  for (const [key, value] of Object.entries(filters.tags ?? {})) {
    query = query.where("id", "in", (eb) =>
      eb.selectFrom("snapshot_tags").select("snapshot_id").where("key", "=", key).where("value", "=", value),
    );
  }
  const after = page.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([
        eb("created_at", ">", after.createdAt),
        eb.and([eb("created_at", "=", after.createdAt), eb("id", ">", after.id)]),
      ]),
    );
  }
  query = query.orderBy("created_at").orderBy("id");
  return page.limit === undefined ? query : query.limit(page.limit + 1);
}

export function encodeCursor(position: { createdAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString("base64url");
}

export function decodeCursor(cursor: string): { createdAt: string; id: string } | undefined {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (typeof createdAt === "string" && typeof id === "string") return { createdAt, id };
  } catch {}
  return undefined;
}
