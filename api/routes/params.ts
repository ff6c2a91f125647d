// Path and query parameters shared by several routes.
import { z } from "@hono/zod-openapi";

export const INSTANCE_PATH = z.object({
  id: z
    .string()
    .min(1)
    .max(128)
    .openapi({ param: { name: "id", in: "path" }, description: "Instance id, name, or a unique prefix of its id" }),
});

export const SNAPSHOT_PATH = z.object({
  snapshotId: z
    .string()
    .min(1)
    .max(128)
    .openapi({ param: { name: "snapshotId", in: "path" } }),
});

/** `tags[key]=value` query pairs (deepObject style, as the official SDK sends them) → a map. */
export function tagFilterFromQuery(query: Record<string, string | string[]>): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [name, value] of Object.entries(query)) {
    const match = /^tags\[(.+)\]$/.exec(name);
    if (match) tags[match[1]!] = Array.isArray(value) ? value.at(-1)! : value;
  }
  return tags;
}
