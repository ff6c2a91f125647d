// The read model of instances and snapshots, fed by events; plus the API's name reservations.
import type { Kysely } from "kysely";
import { nowIsoDefault } from "../dialect.ts";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("instances")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("name", "text", (column) => column.notNull())
    .addColumn("host_id", "text", (column) => column.notNull())
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("created_at", "text", (column) => column.notNull())
    .addColumn("resource", "text", (column) => column.notNull())
    .addColumn("sequence", "integer", (column) => column.notNull())
    .addColumn("deleted_at", "text")
    .execute();
  await db.schema.createIndex("instances_by_name").on("instances").columns(["name"]).execute();
  await db.schema.createIndex("instances_by_state").on("instances").columns(["state"]).execute();

  await db.schema
    .createTable("snapshots")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("name", "text")
    .addColumn("kind", "text", (column) => column.notNull())
    .addColumn("source_instance_id", "text", (column) => column.notNull())
    .addColumn("host_id", "text", (column) => column.notNull())
    .addColumn("compression_state", "text", (column) => column.notNull())
    .addColumn("created_at", "text", (column) => column.notNull())
    .addColumn("resource", "text", (column) => column.notNull())
    .addColumn("sequence", "integer", (column) => column.notNull())
    .addColumn("deleted_at", "text")
    .execute();
  // List order and cursor: (created_at, id). Filters: kind, name, source instance, compression state.
  await db.schema.createIndex("snapshots_by_created").on("snapshots").columns(["created_at", "id"]).execute();
  await db.schema.createIndex("snapshots_by_source").on("snapshots").columns(["source_instance_id", "name"]).execute();
  await db.schema.createIndex("snapshots_by_name").on("snapshots").columns(["name"]).execute();
  await db.schema.createIndex("snapshots_by_kind").on("snapshots").columns(["kind", "created_at"]).execute();
  await db.schema.createIndex("snapshots_by_compression").on("snapshots").columns(["compression_state"]).execute();

  await db.schema
    .createTable("snapshot_tags")
    .addColumn("snapshot_id", "text", (column) => column.notNull().references("snapshots.id").onDelete("cascade"))
    .addColumn("key", "text", (column) => column.notNull())
    .addColumn("value", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("snapshot_tags_pk", ["snapshot_id", "key"])
    .execute();
  await db.schema.createIndex("snapshot_tags_by_pair").on("snapshot_tags").columns(["key", "value"]).execute();

  // A name is claimed here before the job that creates the resource is queued: two racing creates cannot both win.
  await db.schema
    .createTable("name_reservations")
    .addColumn("scope", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull())
    .addColumn("resource_id", "text", (column) => column.notNull())
    .addColumn("created_at", "text", (column) => column.notNull().defaultTo(nowIsoDefault(db)))
    .addPrimaryKeyConstraint("name_reservations_pk", ["scope", "name"])
    .execute();
  await db.schema
    .createIndex("name_reservations_by_resource")
    .on("name_reservations")
    .columns(["resource_id"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["name_reservations", "snapshot_tags", "snapshots", "instances"]) {
    await db.schema.dropTable(table).execute();
  }
}
