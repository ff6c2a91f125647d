// Signing secrets: generated as `whsec_…`, kept only encrypted (AES-256-GCM) in SQLite and in the Redis mirror.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { createFileOnceSync } from "../files.ts";

export const SECRET_PREFIX = "whsec_";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT = "v1";

/** How long the previous secret keeps signing after a rotation, so receivers can switch over. */
export const PREVIOUS_SECRET_TTL_MS = 24 * 3_600_000;

/** Secrets an endpoint signs with: the current one (no expiry) first, then the previous until it expires. */
export const SIGNING_SECRETS = z.array(z.object({ secret: z.string(), expires_at: z.iso.datetime().nullable() }));
export type SigningSecrets = z.infer<typeof SIGNING_SECRETS>;

export function generateSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(24).toString("base64")}`;
}

/** The secrets still valid at `now`. */
export function activeSecrets(secrets: SigningSecrets, now = new Date()): string[] {
  return secrets
    .filter((entry) => entry.expires_at === null || Date.parse(entry.expires_at) > now.getTime())
    .map((entry) => entry.secret);
}

/** A new current secret; the old current one keeps signing for PREVIOUS_SECRET_TTL_MS. */
export function rotateSecrets(secrets: SigningSecrets, now = new Date()): { secrets: SigningSecrets; secret: string } {
  const secret = generateSigningSecret();
  const current = secrets.find((entry) => entry.expires_at === null);
  const previous = current
    ? [{ secret: current.secret, expires_at: new Date(now.getTime() + PREVIOUS_SECRET_TTL_MS).toISOString() }]
    : [];
  return { secret, secrets: [{ secret, expires_at: null }, ...previous] };
}

/** Encrypts and decrypts secret material with one 32-byte key (authenticated: tampering fails to decrypt). */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`a secret key is ${KEY_BYTES} bytes`);
  }

  seal(secrets: SigningSecrets): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(secrets), "utf8"), cipher.final()]);
    return `${FORMAT}.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64")}`;
  }

  open(sealed: string): SigningSecrets {
    const [format, encoded] = sealed.split(".", 2);
    if (format !== FORMAT || !encoded) throw new Error("unknown secret format");
    const raw = Buffer.from(encoded, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    const plain = Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    return SIGNING_SECRETS.parse(JSON.parse(plain.toString("utf8")));
  }
}

export const SECRET_KEY_FILE = "webhook-secret-key";

/** WEBHOOK_SECRET_KEY when set, else the key file in DATA_DIR, created once by whichever process comes first. */
export function loadSecretKey(configured: string | undefined, dataDir: string): Buffer {
  if (configured) return Buffer.from(configured, "base64");
  const file = path.join(dataDir, SECRET_KEY_FILE);
  try {
    return Buffer.from(readFileSync(file, "utf8").trim(), "base64");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  mkdirSync(dataDir, { recursive: true });
  // Created once, durably: if another process won the race, its key is read below.
  createFileOnceSync(file, `${randomBytes(KEY_BYTES).toString("base64")}\n`, 0o600);
  return Buffer.from(readFileSync(file, "utf8").trim(), "base64");
}
