// A migrated read model for a test: a SQLite file in a temp dir, or a fresh PostgreSQL database; `close` removes it.
import { type DatabaseTarget, type Db, migrateToLatest, openDatabase } from "../../api/db/database.ts";
import type { DialectName } from "../../api/db/dialect.ts";
import { tempDir } from "./fixtures.ts";
import { testDatabaseTarget } from "./postgres.ts";

export interface TestDatabase {
  db: Db;
  /** Where it is: open another handle on it to act as a second replica or process. */
  target: DatabaseTarget;
  close(): Promise<void>;
}

export async function openTestDatabase(name: string, dialect: DialectName = "sqlite"): Promise<TestDatabase> {
  const data = tempDir(name);
  const database = await testDatabaseTarget(dialect, data.dir);
  const db = openDatabase(database.target);
  await migrateToLatest(db);
  return {
    db,
    target: database.target,
    async close() {
      await db.destroy();
      await database.drop();
      data.remove();
    },
  };
}
