// What commands print: JSON for scripts (--json), aligned columns for people.
export interface Output {
  json: boolean;
  /** A list: JSON array, or one row per item with the given columns. */
  list<T>(items: T[], columns: Record<string, (item: T) => unknown>): void;
  /** One resource: JSON object, or `key: value` lines of the given fields. */
  item<T>(item: T, fields: Record<string, (item: T) => unknown>): void;
  /** A line for people only (nothing under --json). */
  note(text: string): void;
}

export function createOutput(json: boolean, write = (text: string) => process.stdout.write(text)): Output {
  return {
    json,
    list(items, columns) {
      if (json) return write(`${JSON.stringify(items, null, 2)}\n`);
      const rows = [Object.keys(columns), ...items.map((item) => Object.values(columns).map((get) => show(get(item))))];
      const widths = rows[0]!.map((_, index) => Math.max(...rows.map((row) => row[index]!.length)));
      for (const row of rows)
        write(
          `${row
            .map((cell, index) => cell.padEnd(widths[index]!))
            .join("  ")
            .trimEnd()}\n`,
        );
    },
    item(item, fields) {
      if (json) return write(`${JSON.stringify(item, null, 2)}\n`);
      const width = Math.max(...Object.keys(fields).map((name) => name.length));
      for (const [name, get] of Object.entries(fields)) write(`${name.padEnd(width)}  ${show(get(item))}\n`);
    },
    note(text) {
      if (!json) write(`${text}\n`);
    },
  };
}

function show(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export const formatBytes = (bytes: number | null | undefined): string => {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
};

/** Deletes each id in turn; says so per id, or prints `{"deleted": [...]}` under --json. */
export async function removeEach(output: Output, ids: string[], remove: (id: string) => Promise<unknown>) {
  for (const id of ids) {
    await remove(id);
    output.note(`deleted ${id}`);
  }
  if (output.json) output.item({ deleted: ids }, {});
}
