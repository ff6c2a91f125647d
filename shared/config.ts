// The one place that reads process.env: every variable the service knows, validated once at boot.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { z } from "zod";
import { CODEC_BACKEND_CHOICES } from "./codec/options.ts";
import { parseDurationList } from "./duration.ts";
import { HOST_ID_PATTERN } from "./host-id.ts";
import { DEFAULT_RETRY_SCHEDULE } from "./webhooks/retry-schedule.ts";

const booleanFromEnv = z.enum(["true", "false", "1", "0"]).transform((value) => value === "true" || value === "1");

const positiveInt = z.coerce.number().int().positive();

const SEVEN_DAYS_MS = 7 * 86_400_000;

/** One duration such as `90s`, `12h` or `7d`, in milliseconds. */
const duration = z.string().transform((value, context) => {
  const [ms, ...rest] = parseDurationList(value) ?? [];
  if (ms === undefined || rest.length > 0) {
    context.addIssue({ code: "custom", message: "a duration like 90s, 12h or 7d (Go units, or d for days)" });
    return 0;
  }
  return ms;
});

/** Comma-separated bearer keys, 16 characters or more each. */
const apiKeyList = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? "")
      .split(",")
      .map((key) => key.trim())
      .filter(Boolean),
  )
  .refine((keys) => keys.every((key) => key.length >= 16), "each key must be at least 16 characters");

/** Environment variables, by name. Each entry is documented in the README's configuration table. */
export const ENV_SCHEMA = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default("0.0.0.0"),
  DATA_DIR: z.string().min(1).default("./data"),
  DATABASE_PATH: z.string().min(1).optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\/\S+$/, "must be a postgres:// or postgresql:// URL")
    .optional(),
  IMAGES_DIR: z.string().min(1).optional(),
  REDIS_URL: z
    .string()
    .regex(/^(rediss?|unix|redis\+sentinel):\/\//, "must start with redis://, rediss://, unix:// or redis+sentinel://")
    .optional(),
  /** Sentinels to ask for the primary (`host:port,host:port`): with REDIS_SENTINEL_NAME, instead of REDIS_URL. */
  REDIS_SENTINELS: z
    .string()
    .regex(/^[^\s,:/@]+:\d+(,[^\s,:/@]+:\d+)*$/, "must be host:port[,host:port…]")
    .optional(),
  /** The name the sentinels monitor the primary under. */
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .optional(),
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .default("snapfleet"),
  API_KEYS: apiKeyList,
  /** Keys that may only read (GET and HEAD, never an export): for dashboards and the CLI's list commands. */
  API_READ_KEYS: apiKeyList,
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  BODY_LIMIT_BYTES: positiveInt.default(1024 * 1024),
  HOST_ID: z.string().regex(HOST_ID_PATTERN, "lowercase letters, digits and dashes, at most 63").optional(),
  QEMU_ACCEL: z.enum(["auto", "kvm", "tcg"]).default("auto"),
  /** The capture worker's payload server (snapshot files for export, import and other hosts); 0 picks a free port. */
  PAYLOAD_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  /** The payload server's listen address; unset: loopback on a one-host fleet, all interfaces with a fleet secret. */
  PAYLOAD_BIND: z.string().min(1).optional(),
  PAYLOAD_HOST: z.undefined({ error: "renamed PAYLOAD_BIND" }).optional(),
  /** The name the API and other hosts reach this host's payload server by; default: loopback, or the host name. */
  PAYLOAD_ADVERTISE_HOST: z.string().min(1).optional(),
  /** PEM files: with both set the payload server speaks HTTPS only. */
  PAYLOAD_TLS_CERT: z.string().min(1).optional(),
  PAYLOAD_TLS_KEY: z.string().min(1).optional(),
  /** PEM file of the CA that signed the payload servers' certificates: the API and hosts verify them against it. */
  PAYLOAD_TLS_CA: z.string().min(1).optional(),
  /** Keys the payload servers' request tokens; required with several hosts (or FLEET_SECRET_FILE); never in Redis. */
  FLEET_SECRET: z.string().min(16, "at least 16 characters").optional(),
  /** A file holding FLEET_SECRET (a mounted secret); read once at boot. */
  FLEET_SECRET_FILE: z.string().min(1).optional(),
  JOB_RESULT_TIMEOUT_MS: positiveInt.default(60_000),
  REDIS_COMMAND_TIMEOUT_MS: positiveInt.default(1_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt.default(8_000),
  COMPRESSION_CONCURRENCY: positiveInt.max(64).default(1),
  /** A compression job whose worker stops renewing its lock this long (it crashed) is run again by another. */
  COMPRESSION_JOB_LOCK_MS: positiveInt.min(1_000).default(30_000),
  CODEC_BACKEND: z.enum(CODEC_BACKEND_CHOICES).default("auto"),
  SNAPSHOT_COMPRESSION_DEFAULT: z
    .string()
    .regex(/^(none|zstd|lz4)(:\d{1,2})?$/, "none, zstd, lz4, or algorithm:level such as zstd:3")
    .refine((value) => {
      const [algorithm, level] = value.split(":");
      if (level === undefined) return true;
      const number = Number(level);
      return algorithm === "zstd" ? number >= 1 && number <= 19 : algorithm === "lz4" ? number <= 9 : false;
    }, "level out of range (zstd 1-19, lz4 0-9)")
    .default("none"),
  WEBHOOK_ALLOWED_HOSTS: z
    .string()
    .optional()
    .transform((value) =>
      (value ?? "")
        .split(",")
        .map((entry) => entry.trim())
        .filter(Boolean),
    )
    .refine(
      (entries) => entries.every((entry) => /^[A-Za-z0-9.:_-]+(\/\d{1,3})?$/.test(entry)),
      "comma-separated host names, addresses or CIDRs",
    ),
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .default(DEFAULT_RETRY_SCHEDULE)
    .transform((value, context) => {
      const delays = parseDurationList(value);
      if (!delays)
        context.addIssue({
          code: "custom",
          message: "comma-separated durations like 5s,5m,2h (Go units, or d for days)",
        });
      return delays ?? [];
    }),
  WEBHOOK_TIMEOUT_MS: positiveInt.max(60_000).default(15_000),
  WEBHOOK_DISABLE_AFTER_MS: positiveInt.default(5 * 24 * 3_600_000),
  WEBHOOK_CONCURRENCY: positiveInt.max(1_000).default(50),
  WEBHOOK_SECRET_KEY: z
    .string()
    .refine((value) => Buffer.from(value, "base64").length === 32, "32 bytes, base64-encoded")
    .optional(),
  EVENTS_HEARTBEAT_MS: positiveInt.default(15_000),
  /** How long the answer to a POST with an Idempotency-Key is replayed for the same key. */
  IDEMPOTENCY_KEY_TTL_MS: positiveInt.default(24 * 3_600_000),
  /** A POST with an Idempotency-Key still running at its 504 runs on this long (longest host job and its queue). */
  IDEMPOTENCY_DETACHED_WAIT_MS: positiveInt.default(15 * 60_000),
  /** This API replica's consumer name in the stream consumer groups; unset: `<hostname>-<PORT>`. */
  API_REPLICA_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,100}$/, "letters, digits, _ . : - only, at most 100")
    .optional(),
  /** A stream entry another replica took and has not acknowledged for this long (it died) is claimed. */
  STREAM_CLAIM_IDLE_MS: positiveInt.min(100).default(30_000),
  /**
   * The API's and payload servers' connections close after this long with no byte moving; a request of any length
   * completes while its body flows (no 5-minute cut). Long enough for the slowest export preparation.
   */
  HTTP_IDLE_TIMEOUT_MS: positiveInt.min(100).default(10 * 60_000),
  /** A client has this long to send its request headers. */
  HTTP_HEADERS_TIMEOUT_MS: positiveInt.min(100).default(60_000),
  /** How often the API rebuilds what only Redis holds (schedulers, pending deliveries' jobs) from the database. */
  RECONCILE_INTERVAL_MS: positiveInt.min(1_000).default(60_000),
  /** An event that fails to apply to the read model this many times goes to the dead-letter stream. */
  PROJECTOR_MAX_ATTEMPTS: positiveInt.max(1_000).default(5),
  /**
   * Each host appends a digest of what it owns this often (its full state at start and after every Redis reconnect);
   * the API asks it for the buckets that differ, at most once per half this per host.
   */
  ANNOUNCE_INTERVAL_MS: positiveInt.min(1_000).max(30_000).default(15_000),
  /** How long a host keeps (and announces) the tombstone of a deleted instance or snapshot. */
  TOMBSTONE_RETENTION_MS: positiveInt.min(60_000).default(7 * 24 * 3_600_000),
  /** A host job whose worker stops renewing its lock this long (it crashed) is run again; re-runs are idempotent. */
  HOST_JOB_LOCK_MS: positiveInt.min(1_000).default(30_000),
  /**
   * Host jobs a capture worker runs at once. They mostly wait on QEMU and the disk, and work on one instance is
   * serialised by its own lock, so a fan-out of forks runs side by side rather than four at a time.
   */
  HOST_JOB_CONCURRENCY: positiveInt.max(256).default(32),
  /** Test only: a file of armed crash point names; a process reaching an armed point disarms it and kills itself. */
  CRASH_POINTS_FILE: z.string().min(1).optional(),
  /** Hard cap on the event stream's length, for a consumer group that never catches up. */
  EVENT_STREAM_MAX_LENGTH: positiveInt.min(1_000).default(1_000_000),
  /** How long the read model remembers applied event ids (replays older than this are caught by record versions). */
  PROCESSED_EVENTS_RETENTION: duration.default(SEVEN_DAYS_MS),
  /** How long deleted instances and snapshots stay in the read model as tombstones. */
  DELETED_RESOURCES_RETENTION: duration.default(SEVEN_DAYS_MS),
  /** How long finished (succeeded or failed) webhook deliveries and their attempts stay in the delivery log. */
  WEBHOOK_DELIVERIES_RETENTION: duration.default(SEVEN_DAYS_MS),
  /** A guest's serial console log is rotated (one previous file kept) once it is larger than this. */
  CONSOLE_LOG_MAX_BYTES: positiveInt.min(4_096).default(8 * 1024 * 1024),
  /** Bytes the cache of seekable copies of raw payloads (made for exports and pulls) may hold before LRU entries go. */
  RAW_CACHE_BUDGET_BYTES: positiveInt.default(4 * 1024 ** 3),
  /**
   * Snapshot payloads on a host beyond this many bytes are evicted, least recently used first: copies of other hosts'
   * snapshots, and originals the object store holds (pulled back before their next use). Unset: no bound.
   */
  PAYLOAD_CACHE_BYTES: positiveInt.optional(),
  /** A payload used (forked, restored, pulled) this recently is never evicted, whatever PAYLOAD_CACHE_BYTES says. */
  PAYLOAD_CACHE_GRACE_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  /** How often a host holds its caches (RAW_CACHE_BUDGET_BYTES, PAYLOAD_CACHE_BYTES) to their budgets. */
  CACHE_CHECK_INTERVAL_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
  /** The largest snapshot archive a host imports (POST /snapshots/import): 413 beyond it. */
  IMPORT_MAX_BYTES: positiveInt.min(1024 * 1024).default(128 * 1024 ** 3),
  /** Imports a host runs at once; one more is a 503 until one ends. */
  IMPORT_MAX_CONCURRENT: positiveInt.max(64).default(2),
  /** A compressed snapshot's image mount no VM uses is kept this long for the next fork (0: unmounted at once). */
  IMAGE_MOUNT_IDLE_MS: z.coerce.number().int().min(0).max(86_400_000).default(600_000),
  /** At most this many unused image mounts are kept; beyond it the least recently used is unmounted. */
  IMAGE_MOUNTS_IDLE_MAX: z.coerce.number().int().min(0).max(1_024).default(16),
  WORKER_RESTART: booleanFromEnv.default(true),
  /** The supervisor's restart back-off doubles from 1 s up to this for a child that keeps dying. */
  WORKER_RESTART_MAX_DELAY_MS: positiveInt.default(30_000),
  /**
   * The object store snapshots are kept in beyond their host (shared/object-store.ts): set S3_BUCKET to use one. Unset,
   * payloads live on host disks only. Without keys the AWS SDK's own credential chain applies (instance roles).
   */
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "an S3 bucket name: 3-63 lowercase letters, digits, dots, dashes")
    .optional(),
  /** An S3-compatible endpoint (MinIO, Ceph's radosgw); unset: AWS itself. */
  S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  S3_REGION: z.string().min(1).default("us-east-1"),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Path-style addressing (`<endpoint>/<bucket>/<key>`), which most S3-compatible servers need; default: on with S3_ENDPOINT. */
  S3_FORCE_PATH_STYLE: booleanFromEnv.optional(),
  /** Set by the supervisor for its children: they stop when it is gone, so no process outlives `npm start`. */
  SUPERVISOR_PID: positiveInt.optional(),
});

export type RawConfig = z.infer<typeof ENV_SCHEMA>;

export interface Config
  extends Omit<
    RawConfig,
    "DATABASE_PATH" | "IMAGES_DIR" | "API_REPLICA_ID" | "FLEET_SECRET_FILE" | "PAYLOAD_HOST" | "PAYLOAD_BIND"
  > {
  DATA_DIR: string;
  API_REPLICA_ID: string;
  DATABASE_PATH: string;
  IMAGES_DIR: string;
  /** From FLEET_SECRET or FLEET_SECRET_FILE; undefined: a one-host fleet (the secret is generated into DATA_DIR). */
  FLEET_SECRET: string | undefined;
  PAYLOAD_BIND: string;
  PAYLOAD_ADVERTISE_HOST: string;
}

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((issue) => `  ${issue}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Parses the environment; throws ConfigError naming every bad variable. */
export function parseConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(
    Object.keys(ENV_SCHEMA.shape).map((name) => [name, env[name] === "" ? undefined : env[name]]),
  );
  const result = ENV_SCHEMA.safeParse(known);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? "environment");
        const value = known[name];
        return `${name}: ${issue.message}${value === undefined ? "" : ` (got ${JSON.stringify(value)})`}`;
      }),
    );
  }
  const dataDir = path.resolve(result.data.DATA_DIR);
  if (result.data.API_READ_KEYS.some((key) => result.data.API_KEYS.includes(key))) {
    throw new ConfigError(["API_READ_KEYS: a key may not be both read-only and in API_KEYS"]);
  }
  const redisUrl = redisSettings(result.data);
  if (typeof redisUrl === "object") throw new ConfigError(redisUrl.issues);
  const fleet = fleetSettings(result.data);
  if ("issues" in fleet) throw new ConfigError(fleet.issues);
  const { FLEET_SECRET_FILE: _file, PAYLOAD_HOST: _renamed, ...settings } = result.data;
  return {
    ...settings,
    ...fleet,
    REDIS_URL: redisUrl,
    DATA_DIR: dataDir,
    DATABASE_PATH: path.resolve(dataDir, result.data.DATABASE_PATH ?? "snapfleet.db"),
    IMAGES_DIR: path.resolve(dataDir, result.data.IMAGES_DIR ?? "images"),
    API_REPLICA_ID: result.data.API_REPLICA_ID ?? `${hostname()}-${result.data.PORT}`,
  };
}

/**
 * REDIS_SENTINELS and REDIS_SENTINEL_NAME become one `redis+sentinel://host:port,host:port/<name>` URL, which every
 * process gets as REDIS_URL (shared/redis.ts connects through the sentinels). REDIS_URL may also be such a URL; set
 * beside the sentinels, it must say the same, or carry only the credentials of the primary (`redis://user:pass@primary`: its host is not used).
 */
function redisSettings(
  data: Pick<z.infer<typeof ENV_SCHEMA>, "REDIS_URL" | "REDIS_SENTINELS" | "REDIS_SENTINEL_NAME">,
): string | undefined | { issues: string[] } {
  const { REDIS_URL: url, REDIS_SENTINELS: sentinels, REDIS_SENTINEL_NAME: name } = data;
  if (!sentinels && !name) return url;
  if (!sentinels || !name) return { issues: ["REDIS_SENTINELS and REDIS_SENTINEL_NAME: set both, or neither"] };
  if (url?.startsWith("redis+sentinel://")) {
    const given = parseSentinelUrl(url);
    if (given.name !== name || given.sentinels.map(({ host, port }) => `${host}:${port}`).join(",") !== sentinels) {
      return { issues: [`REDIS_URL: ${url} names other sentinels than REDIS_SENTINELS and REDIS_SENTINEL_NAME`] };
    }
    return url;
  }
  const credentials = url ? new URL(url) : undefined;
  const auth = credentials?.username || credentials?.password ? `${credentials.username}:${credentials.password}@` : "";
  return `redis+sentinel://${auth}${sentinels}/${name}`;
}

/** The sentinels, the monitored name and the primary's credentials of a `redis+sentinel://` URL. */
export function parseSentinelUrl(url: string): {
  sentinels: Array<{ host: string; port: number }>;
  name: string;
  username?: string;
  password?: string;
} {
  const match = /^redis\+sentinel:\/\/(?:([^:@/]*):([^@/]*)@)?([^/@]+)\/([A-Za-z0-9_.-]+)$/.exec(url);
  if (!match) throw new ConfigError([`REDIS_URL: ${url} is not redis+sentinel://[user:password@]host:port,…/<name>`]);
  const [, username, password, hosts, name] = match;
  const sentinels = hosts!.split(",").map((entry) => {
    const at = entry.lastIndexOf(":");
    return { host: entry.slice(0, at), port: Number(entry.slice(at + 1)) };
  });
  if (sentinels.some(({ host, port }) => !host || !Number.isInteger(port) || port <= 0 || port > 65535)) {
    throw new ConfigError([`REDIS_URL: ${url} names a sentinel that is not host:port`]);
  }
  return {
    sentinels,
    name: name!,
    ...(username ? { username: decodeURIComponent(username) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
  };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** Whether a listen address keeps other machines out. */
export const isLoopbackBind = (address: string): boolean => LOOPBACK.has(address);

/**
 * The fleet secret and where the payload server listens. Without a configured secret the fleet is one host: the
 * secret is generated into its data dir, which no other machine reads, so the payload server stays on loopback.
 */
function fleetSettings(
  raw: RawConfig,
): Pick<Config, "FLEET_SECRET" | "PAYLOAD_BIND" | "PAYLOAD_ADVERTISE_HOST"> | { issues: string[] } {
  const issues: string[] = [];
  let secret = raw.FLEET_SECRET;
  if (raw.FLEET_SECRET_FILE) {
    if (secret) issues.push("FLEET_SECRET_FILE: set FLEET_SECRET or FLEET_SECRET_FILE, not both");
    try {
      secret = readFileSync(raw.FLEET_SECRET_FILE, "utf8").trim();
      if (secret.length < 16) issues.push(`FLEET_SECRET_FILE: ${raw.FLEET_SECRET_FILE} holds fewer than 16 characters`);
    } catch (error) {
      issues.push(`FLEET_SECRET_FILE: cannot read ${raw.FLEET_SECRET_FILE} (${(error as NodeJS.ErrnoException).code})`);
    }
  }
  const bind = raw.PAYLOAD_BIND ?? (secret ? "0.0.0.0" : "127.0.0.1");
  if (!secret && !isLoopbackBind(bind)) {
    issues.push(
      `PAYLOAD_BIND: ${bind} lets other machines in, so the fleet has several hosts: set FLEET_SECRET or FLEET_SECRET_FILE (the same on every host and API)`,
    );
  }
  if (Boolean(raw.S3_ACCESS_KEY_ID) !== Boolean(raw.S3_SECRET_ACCESS_KEY)) {
    issues.push("S3_ACCESS_KEY_ID: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY together");
  }
  if (raw.S3_ENDPOINT && !raw.S3_BUCKET) issues.push("S3_BUCKET: S3_ENDPOINT is set, so name the bucket too");
  if (Boolean(raw.PAYLOAD_TLS_CERT) !== Boolean(raw.PAYLOAD_TLS_KEY)) {
    issues.push("PAYLOAD_TLS_CERT: set PAYLOAD_TLS_CERT and PAYLOAD_TLS_KEY together");
  }
  if (issues.length > 0) return { issues };
  const advertise = raw.PAYLOAD_ADVERTISE_HOST ?? (isLoopbackBind(bind) ? "127.0.0.1" : hostname());
  return { FLEET_SECRET: secret, PAYLOAD_BIND: bind, PAYLOAD_ADVERTISE_HOST: advertise };
}

/** For process entry points: parse or print the problem and exit non-zero. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}
