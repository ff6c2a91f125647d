// Standard Webhooks request signing, through the `standardwebhooks` package: one `v1,` signature per active secret.
import { Webhook } from "standardwebhooks";

export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** Headers for one attempt: the id is the event's (stable across retries), the timestamp is the attempt's. */
export function signDelivery(
  messageId: string,
  body: string,
  secrets: readonly string[],
  at = new Date(),
): SignedHeaders {
  if (secrets.length === 0) throw new Error("an endpoint needs at least one signing secret");
  return {
    "webhook-id": messageId,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1_000)),
    "webhook-signature": secrets.map((secret) => new Webhook(secret).sign(messageId, at, body)).join(" "),
  };
}
