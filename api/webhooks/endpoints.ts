// Webhook endpoints: rows in the API's read model mirrored into Redis for the delivery worker.
// Each change writes the row and the mirror in one transaction, so a Redis failure leaves neither changed.
import type { Redis } from "ioredis";
import type { Selectable } from "kysely";
import { invalidRequest, notFound, unavailable } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { withDeadline } from "../../shared/redis.ts";
import { deleteEndpointMirror, writeEndpointMirror } from "../../shared/webhooks/mirror.ts";
import { generateSigningSecret, rotateSecrets, type SecretBox } from "../../shared/webhooks/secrets.ts";
import { type UrlGuard, UrlRefusedError } from "../../shared/webhooks/url-guard.ts";
import type { Db } from "../db/database.ts";
import { needsRowLocks } from "../db/dialect.ts";
import type { WebhookEndpointsTable } from "../db/schema.ts";
import type { Transaction } from "./deliveries.ts";
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
    await this.options.db.transaction().execute(async (trx) => {
      await trx.insertInto("webhook_endpoints").values(row).execute();
      await this.mirror(row);
    });
    return { ...toResource(row), secret };
  }

  async list(): Promise<WebhookEndpoint[]> {
    const rows = await this.options.db.selectFrom("webhook_endpoints").selectAll().orderBy("created_at").execute();
    return rows.map(toResource);
  }

  async get(id: string): Promise<WebhookEndpoint> {
    return toResource(await this.row(this.options.db, id));
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
  async disable(id: string, reason: string, trx?: Transaction): Promise<void> {
    await this.change(id, () => ({ enabled: 0, disabled_reason: reason }), trx);
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
    await this.options.db.transaction().execute(async (trx) => {
      await this.row(trx, id);
      await trx.deleteFrom("webhook_endpoints").where("id", "=", id).execute();
      await this.redisCall(deleteEndpointMirror(this.options.redis, this.options.prefix, id), "delete mirror");
    });
  }

  /** Writes every endpoint's mirror: at start-up, so Redis agrees with SQLite whatever happened meanwhile. */
  async syncMirror(): Promise<number> {
    const rows = await this.options.db.selectFrom("webhook_endpoints").selectAll().execute();
    for (const row of rows) await this.mirror(row);
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

  private async change(
    id: string,
    compute: (row: EndpointRow) => Partial<EndpointRow>,
    outer?: Transaction,
  ): Promise<WebhookEndpoint> {
    const apply = async (trx: Transaction) => {
      const current = await this.row(trx, id);
      const updated: EndpointRow = { ...current, ...compute(current), updated_at: new Date().toISOString() };
      await trx.updateTable("webhook_endpoints").set(updated).where("id", "=", id).execute();
      await this.mirror(updated);
      return toResource(updated);
    };
    return outer ? apply(outer) : this.options.db.transaction().execute(apply);
  }

  /** The endpoint's row; inside a transaction it stays locked until the end (replicas change endpoints too). */
  private async row(db: Db | Transaction, id: string): Promise<EndpointRow> {
    const row = await db
      .selectFrom("webhook_endpoints")
      .selectAll()
      .where("id", "=", id)
      .$if(db.isTransaction && needsRowLocks(db), (query) => query.forUpdate())
      .executeTakeFirst();
    if (!row) throw notFound("webhook endpoint", id);
    return row;
  }

  private async mirror(row: EndpointRow): Promise<void> {
    await this.redisCall(
      writeEndpointMirror(this.options.redis, this.options.prefix, row.id, {
        url: row.url,
        enabled: row.enabled === 1,
        disabledReason: row.disabled_reason,
        sealedSecrets: row.sealed_secrets,
      }),
      "write mirror",
    );
  }

  private async checkUrl(url: string): Promise<void> {
    try {
      await this.options.urlGuard.check(url);
    } catch (error) {
      if (error instanceof UrlRefusedError) throw invalidRequest(`url: ${error.message}`);
      throw error;
    }
  }

  private async redisCall<T>(promise: Promise<T>, what: string): Promise<T> {
    try {
      return await withDeadline(promise, this.options.redisCommandTimeoutMs, `${what}: redis did not answer`);
    } catch (error) {
      promise.catch(() => {});
      throw unavailable(`webhook endpoints unavailable (${what})`, error);
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
