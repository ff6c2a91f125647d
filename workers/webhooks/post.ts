// One HTTP POST to a webhook receiver: no redirects followed, a hard deadline, addresses checked at connect time.
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { parseRetryAfter } from "../../shared/webhooks/retry-schedule.ts";
import { parseWebhookUrl, type UrlGuard, UrlRefusedError } from "../../shared/webhooks/url-guard.ts";

export interface PostResult {
  statusCode: number | null;
  durationMs: number;
  /** Why the attempt did not succeed; null on 2xx. */
  error: string | null;
  retryAfterMs?: number;
}

/** Enough of a receiver's error body to say what went wrong, no more. */
const ERROR_BODY_CHARS = 500;
const USER_AGENT = "Snapfleet-Webhooks/1.0";

const AGENTS = {
  "http:": new http.Agent({ keepAlive: true, maxSockets: 256 }),
  "https:": new https.Agent({ keepAlive: true, maxSockets: 256 }),
};

export async function postWebhook(
  url: string,
  body: string,
  headers: Record<string, string>,
  options: { guard: UrlGuard; timeoutMs: number; signal?: AbortSignal },
): Promise<PostResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let target: URL;
  try {
    target = parseWebhookUrl(url);
    const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(hostname) && !options.guard.addressAllowed(hostname, hostname)) {
      throw new UrlRefusedError(`${hostname} is not an allowed address`);
    }
  } catch (error) {
    return { statusCode: null, durationMs: elapsed(), error: `refused: ${(error as Error).message}` };
  }

  return new Promise<PostResult>((resolve) => {
    const client = target.protocol === "https:" ? https : http;
    const request = client.request(target, {
      method: "POST",
      agent: AGENTS[target.protocol as keyof typeof AGENTS],
      lookup: options.guard.lookup,
      headers: {
        ...headers,
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "user-agent": USER_AGENT,
      },
      signal: options.signal,
    });
    const timer = setTimeout(
      () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const finish = (result: PostResult) => {
      clearTimeout(timer);
      resolve(result);
    };
    request.on("error", (error) => {
      const refused = error instanceof UrlRefusedError ? "refused: " : "";
      finish({ statusCode: null, durationMs: elapsed(), error: `${refused}${error.message}` });
    });
    request.on("response", (response) => {
      const statusCode = response.statusCode ?? 0;
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        if (text.length < ERROR_BODY_CHARS) text += chunk;
      });
      response.on("error", () => {}); // the status already decided the outcome
      response.on("end", () => finish(describe(statusCode, response.headers, text, elapsed())));
    });
    request.end(body);
  });
}

function describe(statusCode: number, headers: http.IncomingHttpHeaders, text: string, durationMs: number): PostResult {
  if (statusCode >= 200 && statusCode < 300) return { statusCode, durationMs, error: null };
  const retryAfterMs = parseRetryAfter(headers["retry-after"]);
  const snippet = text.slice(0, ERROR_BODY_CHARS).trim();
  const error =
    statusCode >= 300 && statusCode < 400
      ? `redirect not followed: ${statusCode} to ${headers.location ?? "(no location)"}`
      : `receiver answered ${statusCode}${snippet ? `: ${snippet}` : ""}`;
  return { statusCode, durationMs, error, retryAfterMs };
}
