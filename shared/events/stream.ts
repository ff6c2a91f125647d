// The durable event stream in Redis: append by position; entries hold an event, a part of a host's state announcement,
// or a host's digest.
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { HOST_ANNOUNCEMENT, type HostAnnouncement } from "./announcement.ts";
import { EVENT_CATALOG, type EventData, type EventType, parseEvent, type TypedEvent } from "./catalog.ts";
import { HOST_DIGEST, type HostDigest } from "./digest.ts";

export const eventStreamKey = (prefix: string) => `${prefix}:events`;

const EVENT_FIELD = "event";
const ANNOUNCEMENT_FIELD = "announcement";
const DIGEST_FIELD = "digest";

/** Who the event is, as the owning host committed it: re-appending the same stamp is harmless (consumers dedupe by id). */
export interface EventStamp {
  id?: string;
  version: number;
  occurred_at?: string;
}

export interface AppendedEvent {
  streamId: string;
  event: TypedEvent;
}

export const newEventId = () => `evt_${randomBytes(12).toString("hex")}`;

export class EventStream {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  get key(): string {
    return eventStreamKey(this.prefix);
  }

  /** Validates and appends one event; returns its stream position and the envelope as stored. */
  async append<Type extends EventType>(
    type: Type,
    subject: string,
    data: EventData<Type>,
    stamp: EventStamp,
  ): Promise<AppendedEvent> {
    // id, then type, first: peekEventType reads the type without decoding the envelope.
    const envelope = {
      id: stamp.id ?? newEventId(),
      type,
      occurred_at: stamp.occurred_at ?? new Date().toISOString(),
      subject,
      version: stamp.version,
      data: EVENT_CATALOG[type].parse(data),
    };
    const streamId = await this.add(EVENT_FIELD, JSON.stringify(envelope));
    return { streamId, event: envelope as TypedEvent };
  }

  /** Appends one part of a host's announcement (its full state, or the buckets of it the read model asked for). */
  async announce(announcement: HostAnnouncement): Promise<string> {
    return this.add(ANNOUNCEMENT_FIELD, JSON.stringify(HOST_ANNOUNCEMENT.parse(announcement)));
  }

  /** Appends a host's digest of what it owns (shared/events/digest.ts). */
  async digest(digest: HostDigest): Promise<string> {
    return this.add(DIGEST_FIELD, JSON.stringify(HOST_DIGEST.parse(digest)));
  }

  private async add(field: string, body: string): Promise<string> {
    // No cap here: the API's trimmer keeps what every consumer group still needs (shared/events/trim.ts).
    const id = await this.redis.xadd(this.key, "*", field, body);
    return id!;
  }
}

export type StreamEntry =
  | { kind: "event"; event: TypedEvent }
  | { kind: "announcement"; announcement: HostAnnouncement }
  | { kind: "digest"; digest: HostDigest };

/** Reads a stream entry's fields: an event envelope, an announcement or a digest; throws on anything that does not fit. */
export function decodeEntry(fields: string[]): StreamEntry {
  const values = new Map<string, string>();
  for (let index = 0; index + 1 < fields.length; index += 2) values.set(fields[index]!, fields[index + 1]!);
  const announcement = values.get(ANNOUNCEMENT_FIELD);
  if (announcement !== undefined) {
    return { kind: "announcement", announcement: HOST_ANNOUNCEMENT.parse(JSON.parse(announcement)) };
  }
  const digest = values.get(DIGEST_FIELD);
  if (digest !== undefined) return { kind: "digest", digest: HOST_DIGEST.parse(JSON.parse(digest)) };
  const body = values.get(EVENT_FIELD);
  if (body === undefined) throw new Error("stream entry has neither an event, an announcement nor a digest");
  return { kind: "event", event: parseEvent(JSON.parse(body)) };
}

/** How an envelope written by EventStream.append begins: its id, then its type. */
const ENVELOPE_TYPE = /^\{"id":"[^"]*","type":"([a-z_.]+)"/;

/**
 * The type of an entry's event without decoding it, for consumers that skip most events (the metrics reader, the
 * webhook dispatcher): undefined for an announcement or a digest, or when the entry does not begin as append writes it (decode
 * it then). A consumer validates in full whatever it keeps.
 */
export function peekEventType(fields: string[]): string | undefined {
  for (let index = 0; index + 1 < fields.length; index += 2) {
    if (fields[index] === EVENT_FIELD) return ENVELOPE_TYPE.exec(fields[index + 1]!)?.[1];
  }
  return undefined;
}

/** The event of an entry, or undefined for an announcement or a digest (which only the read model consumes). */
export function decodeEvent(fields: string[]): TypedEvent | undefined {
  const entry = decodeEntry(fields);
  return entry.kind === "event" ? entry.event : undefined;
}
