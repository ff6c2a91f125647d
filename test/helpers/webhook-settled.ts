// "Nothing more will be delivered", shown by events: a marker event appended after what a test looks at has reached
// the receiver, and the endpoint's log holds no pending delivery.
import { jsonOf, waitFor } from "./fixtures.ts";
import type { WebhookReceiver } from "./webhook-receiver.ts";

/**
 * Waits until `receiver` got the marker event (the dispatcher reads the stream in order, so it has handled every
 * event before it) and endpoint `endpointId` has no delivery left pending (no job is still due to send).
 */
export async function waitForMarkerDelivered(
  api: (pathAndQuery: string) => Promise<Response>,
  endpointId: string,
  receiver: WebhookReceiver,
  markerEventId: string,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    () => receiver.requests.some((request) => request.headers["webhook-id"] === markerEventId) || undefined,
    { timeoutMs, what: `the marker event ${markerEventId} to be delivered` },
  );
  const pending = async () => (await jsonOf(await api(`/webhooks/${endpointId}/deliveries?status=pending`))).length;
  await waitFor(async () => ((await pending()) === 0 ? true : undefined), {
    timeoutMs,
    what: `no delivery of ${endpointId} pending`,
  });
}
