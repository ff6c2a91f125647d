// Webhook endpoints: rows in SQLite (the API's read model) mirrored into Redis for the delivery worker.
// A change that Redis refuses is undone in SQLite, so a 503 leaves neither changed; a crash in between is
// repaired by the mirror sync at the next start.
import type { Redis } from "ioredis";
import type { Selectable } from "kysely";
import { invalidRequest, notFound } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { KeyedMutex } from "../../shared/keyed-mutex.ts";
import { redisCall } from "../../shared/redis.ts";
import { deleteEndpointMirror, writeEndpointMirror } from "../../shared/webhooks/mirror.ts";
import { generateSigningSecret, rotateSecrets, type SecretBox } from "../../shared/webhooks/secrets.ts";
import { type UrlGuard, UrlRefusedError } from "../../shared/webhooks/url-guard.ts";
import type { Db } from "../db/database.ts";
import type { WebhookEndpointsTable } from "../db/schema.ts";
import type { UpdateWebhookBody, WebhookEndpoint } from "./schemas.ts";

type EndpointRow = Selectable<WebhookEndpointsTable>;

export interface WebhookEndpointsOptions {
  db: Db;
  /** Producer-role connection: mirror writes fail fast while Redis is down. */
  redis: Redis;
  prefix: string;
  secretBox: SecretBox;
  urlGuard: UrlGuard;
  redisCommandTimeoutMs: number;
}

export class WebhookEndpoints {
  /** Serialises changes per endpoint, so a row and its mirror are written in the same order by every change. */
  private readonly locks = new KeyedMutex();

  constructor(private readonly options: WebhookEndpointsOptions) {}

  async create(input: { url: string; event_types: string[]; description: string }) {
    await this.checkUrl(input.url);
    const secret = generateSigningSecret();
    const now = new Date().toISOString();
    const row: EndpointRow = {
      id: newId(),
      url: input.url,
      description: input.description,
      event_types: JSON.stringify(input.event_types),
      enabled: 1,
      disabled_reason: null,
      sealed_secrets: this.options.secretBox.seal([{ secret, expires_at: null }]),
      created_at: now,
      updated_at: now,
      last_success_at: null,
      failing_since: null,
    };
    // Mirror first: the dispatcher reads SQLite, so nothing is delivered to an endpoint the worker cannot see.
    await this.mirror(row);
    try {
      await this.options.db.insertInto("webhook_endpoints").values(row).execute();
    } catch (error) {
      await this.deleteMirror(row.id).catch(() => {}); // the next start's syncMirror rewrites only known endpoints
      throw error;
    }
    return { ...toResource(row), secret };
  }

  async list(): Promise<WebhookEndpoint[]> {
    const rows = await this.options.db.selectFrom("webhook_endpoints").selectAll().orderBy("created_at").execute();
    return rows.map(toResource);
  }

  async get(id: string): Promise<WebhookEndpoint> {
    return toResource(await this.row(id));
  }

  async update(id: string, patch: UpdateWebhookBody): Promise<WebhookEndpoint> {
    if (patch.url !== undefined) await this.checkUrl(patch.url);
    return this.change(id, (row) => ({
      url: patch.url ?? row.url,
      description: patch.description ?? row.description,
      event_types: patch.event_types ? JSON.stringify(patch.event_types) : row.event_types,
      ...(patch.enabled === undefined
        ? {}
        : patch.enabled
          ? { enabled: 1, disabled_reason: null, failing_since: null }
          : { enabled: 0, disabled_reason: null }),
    }));
  }

  /** Disables the endpoint and says why; the worker finds it disabled at each delivery's next attempt. */
  async disable(id: string, reason: string): Promise<void> {
    await this.change(id, () => ({ enabled: 0, disabled_reason: reason }));
  }

  async rotateSecret(id: string) {
    let secret = "";
    const endpoint = await this.change(id, (row) => {
      const rotated = rotateSecrets(this.options.secretBox.open(row.sealed_secrets));
      secret = rotated.secret;
      return { sealed_secrets: this.options.secretBox.seal(rotated.secrets) };
    });
    return { ...endpoint, secret };
  }

  async delete(id: string): Promise<void> {
    await this.locks.run(id, async () => {
      await this.row(id);
      // Mirror first: if Redis fails, nothing has changed; deliveries of a row deleted next find no mirror.
      await this.deleteMirror(id);
      await this.options.db.deleteFrom("webhook_endpoints").where("id", "=", id).execute();
    });
  }

  /**
   * Writes every endpoint's mirror: at start-up and periodically, so Redis agrees with SQLite whatever happened
   * meanwhile (Redis lost its data). Each under its endpoint's lock, re-read: a change or delete in between wins.
   */
  async syncMirror(): Promise<number> {
    const rows = await this.options.db.selectFrom("webhook_endpoints").select("id").execute();
    for (const { id } of rows) {
      await this.locks.run(id, async () => {
        const row = await this.row(id).catch(() => undefined);
        if (row) await this.mirror(row);
      });
    }
    return rows.length;
  }

  /** Enabled endpoints with their patterns: what the dispatcher matches events against. */
  async listEnabled(): Promise<Array<{ id: string; eventTypes: string[] }>> {
    const rows = await this.options.db
      .selectFrom("webhook_endpoints")
      .select(["id", "event_types"])
      .where("enabled", "=", 1)
      .execute();
    return rows.map((row) => ({ id: row.id, eventTypes: JSON.parse(row.event_types) as string[] }));
  }

  /**
   * Writes the changed columns, then the mirror; if Redis fails the columns are put back, so a 503 leaves both as
   * they were. No transaction spans the Redis call: other requests keep reading and writing SQLite meanwhile.
   */
  private change(id: string, compute: (row: EndpointRow) => Partial<EndpointRow>): Promise<WebhookEndpoint> {
    return this.locks.run(id, async () => {
      const current = await this.row(id);
      const changes = { ...compute(current), updated_at: new Date().toISOString() };
      await this.setColumns(id, changes);
      const updated: EndpointRow = { ...current, ...changes };
      try {
        await this.mirror(updated);
      } catch (error) {
        const previous = Object.fromEntries(
          Object.keys(changes).map((column) => [column, current[column as keyof EndpointRow]]),
        );
        await this.setColumns(id, previous);
        throw error;
      }
      return toResource(updated);
    });
  }

  private async setColumns(id: string, columns: Partial<EndpointRow>): Promise<void> {
    await this.options.db.updateTable("webhook_endpoints").set(columns).where("id", "=", id).execute();
  }

  private async row(id: string): Promise<EndpointRow> {
    const row = await this.options.db
      .selectFrom("webhook_endpoints")
      .selectAll()
      .where("id", "=", id)
      .executeTakeFirst();
    if (!row) throw notFound("webhook endpoint", id);
    return row;
  }

  private async mirror(row: EndpointRow): Promise<void> {
    const mirror = writeEndpointMirror(this.options.redis, this.options.prefix, row.id, {
      url: row.url,
      enabled: row.enabled === 1,
      disabledReason: row.disabled_reason,
      sealedSecrets: row.sealed_secrets,
    });
    await redisCall(mirror, this.options.redisCommandTimeoutMs, "webhook endpoints: write mirror");
  }

  private async deleteMirror(id: string): Promise<void> {
    const deletion = deleteEndpointMirror(this.options.redis, this.options.prefix, id);
    await redisCall(deletion, this.options.redisCommandTimeoutMs, "webhook endpoints: delete mirror");
  }

  private async checkUrl(url: string): Promise<void> {
    try {
      await this.options.urlGuard.check(url);
    } catch (error) {
      if (error instanceof UrlRefusedError) throw invalidRequest(`url: ${error.message}`);
      throw error;
    }
  }
}

function toResource(row: EndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    event_types: JSON.parse(row.event_types) as string[],
    enabled: row.enabled === 1,
    disabled_reason: row.disabled_reason,
    created_at: row.created_at,
    updated_at: row.updated_at,
    last_success_at: row.last_success_at,
    failing_since: row.failing_since,
  };
}
