// Versioned migrations, applied in key order; never edit one that has shipped, add the next.
import type { Migration } from "kysely";
import * as initial from "./0001_initial.ts";

export const MIGRATIONS: Record<string, Migration> = {
  "0001_initial": initial,
};
