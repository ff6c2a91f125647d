// The processes `npm start` runs, by name: the same entry points docker-compose.yml uses.
export interface ProcessSpec {
  name: string;
  entry: string;
}

export const SERVICE_PROCESSES: readonly ProcessSpec[] = [
  { name: "api", entry: "api/main.ts" },
  { name: "capture-worker", entry: "workers/host/main.ts" },
  { name: "compression-worker", entry: "workers/compression/main.ts" },
  { name: "webhooks-worker", entry: "workers/webhooks/main.ts" },
];

/** The command that runs an entry point (TypeScript through tsx's loader). */
export function entryCommand(entry: string): string[] {
  return ["node", "--import", "tsx", entry];
}
