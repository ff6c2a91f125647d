// GET /capabilities: the Hypeman shape (resources/capabilities.d.ts), plus our snapshot extension.

import { z } from "../zod.ts";
import { SNAPSHOT_KINDS } from "./snapshot.ts";

const RUNTIME = z
  .object({
    name: z.string().openapi({ description: "Runtime identifier" }),
    available: z.boolean().openapi({ description: "Whether an online host can launch it now" }),
    features: z.array(z.string()).openapi({ description: "snapshots, standby, fork, pause (what the driver offers)" }),
  })
  .openapi("CapabilitiesRuntime");

const COMPRESSION_ALGORITHM = z
  .object({
    name: z.string(),
    min_level: z.number().int(),
    max_level: z.number().int(),
    default_level: z.number().int(),
  })
  .openapi("CapabilitiesCompressionAlgorithm");

export const CAPABILITIES_SCHEMA = z
  .object({
    server: z.object({ api_version: z.string(), version: z.string() }),
    host: z.object({ os: z.string(), arch: z.string() }),
    default_runtime: z.object({ name: z.string(), available: z.boolean() }),
    runtimes: z.array(RUNTIME),
    features: z.array(z.string()).openapi({ description: "Server-level feature ids" }),
    images: z.object({ default_platform: z.string(), platforms: z.array(z.string()) }),
    network: z.object({ model: z.enum(["bridge", "nat"]), guest_to_guest: z.boolean() }),
    // Beyond the Hypeman shape (the SDK ignores unknown fields):
    snapshots: z
      .object({
        kinds: z.array(z.enum(SNAPSHOT_KINDS)),
        compression: z.array(COMPRESSION_ALGORITHM),
      })
      .openapi({ description: "Extension: snapshot kinds and compression algorithms with their level ranges" }),
    hosts: z
      .array(z.object({ id: z.string(), online: z.boolean(), hypervisors: z.array(z.string()) }))
      .openapi({ description: "Extension: the worker hosts and what each runs" }),
  })
  .openapi("Capabilities");

export type Capabilities = z.infer<typeof CAPABILITIES_SCHEMA>;
