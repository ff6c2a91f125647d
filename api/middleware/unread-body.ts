// An error answered before the client finished sending its body (an import a busy host refused, a 401, a 413).
// Answering at once and closing makes the kernel reset the connection under a client that is still writing, and
// the reset discards our answer on its side: the client sees EPIPE or "other side closed" instead of a 503 that
// tells it to retry. So the rest of the body is read and dropped first, within bounds, and the answer goes out on a
// connection that can carry the next request. Beyond the bounds the answer says `Connection: close`.
import type { IncomingMessage } from "node:http";

export interface UnreadBodyLimits {
  /** The most bytes read and dropped before answering anyway. */
  maxBytes: number;
  /** The longest wait for the rest of the body before answering anyway. */
  maxMs: number;
}

/** A refused import archive of a few hundred MiB is read to its end on a local network; anything larger is cut. */
export const UNREAD_BODY_LIMITS: UnreadBodyLimits = { maxBytes: 256 * 1024 ** 2, maxMs: 10_000 };

/** Whether the request declared a body that has not been read to its end. */
export function bodyLeftUnread(incoming: IncomingMessage | undefined, headers: Headers): boolean {
  const declared = Number(headers.get("content-length") ?? 0) > 0 || headers.has("transfer-encoding");
  return declared && !incoming?.readableEnded;
}

/**
 * Reads what is left of `incoming` and drops it. Whoever was reading it (a body parser that gave up, a stream to a
 * host that refused it) gets no more. Resolves true once the body ended, false when a bound was hit or the client
 * went away first.
 */
export function dropRestOfBody(incoming: IncomingMessage, limits: UnreadBodyLimits = UNREAD_BODY_LIMITS) {
  if (incoming.readableEnded) return Promise.resolve(true);
  if (incoming.destroyed) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    let dropped = 0;
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("close", onClose);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > limits.maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(incoming.readableEnded);
    const timer = setTimeout(() => finish(false), limits.maxMs);
    incoming.removeAllListeners("data");
    incoming.on("data", onData);
    incoming.once("end", onEnd);
    incoming.once("close", onClose);
    incoming.resume();
  });
}
