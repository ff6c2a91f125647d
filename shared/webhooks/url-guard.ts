// Which webhook URLs may be called: http(s) only, and never loopback, private, link-local or metadata
// addresses unless the allow-list (WEBHOOK_ALLOWED_HOSTS) names the host, the address or its network.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";

const BLOCKED_IPV4 = [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata (169.254.169.254)
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const;

const BLOCKED_IPV6 = [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7], // unique local, including AWS's metadata fd00:ec2::254
  ["fe80::", 10],
  ["ff00::", 8],
] as const;

export class UrlRefusedError extends Error {
  override name = "UrlRefusedError";
}

export interface UrlGuard {
  /** Throws UrlRefusedError unless the URL is http(s) and every address its host resolves to may be called. */
  check(url: string): Promise<void>;
  /** A DNS lookup for http.request that refuses blocked addresses at connect time (no rebinding window). */
  lookup: LookupFunction;
  /** Whether a literal address may be called from `hostname`. */
  addressAllowed(address: string, hostname?: string): boolean;
}

export function createUrlGuard(allowList: readonly string[] = []): UrlGuard {
  const blocked = new BlockList();
  for (const [network, prefix] of BLOCKED_IPV4) blocked.addSubnet(network, prefix, "ipv4");
  for (const [network, prefix] of BLOCKED_IPV6) blocked.addSubnet(network, prefix, "ipv6");

  const allowed = new BlockList();
  const allowedHosts = new Set<string>();
  for (const entry of allowList) {
    const [address, prefix] = entry.split("/");
    const family = isIP(address ?? "");
    if (family === 0) allowedHosts.add(entry.toLowerCase());
    else if (prefix === undefined) allowed.addAddress(address!, family === 4 ? "ipv4" : "ipv6");
    else allowed.addSubnet(address!, Number(prefix), family === 4 ? "ipv4" : "ipv6");
  }

  const addressAllowed = (address: string, hostname?: string): boolean => {
    if (hostname && allowedHosts.has(stripBrackets(hostname).toLowerCase())) return true;
    const normalized = unmapIpv4(address);
    const type = isIP(normalized) === 4 ? "ipv4" : "ipv6";
    return allowed.check(normalized, type) || !blocked.check(normalized, type);
  };

  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, "", 0);
      const refused = addresses.find((entry) => !addressAllowed(entry.address, hostname));
      if (refused) return callback(refusal(hostname, refused.address), "", 0);
      const first = addresses[0]!;
      if (options.all) return (callback as unknown as (e: null, all: LookupAddress[]) => void)(null, addresses);
      callback(null, first.address, first.family);
    });
  };

  return {
    addressAllowed,
    lookup,
    async check(url) {
      const parsed = parseWebhookUrl(url);
      const hostname = stripBrackets(parsed.hostname);
      if (isIP(hostname)) {
        if (!addressAllowed(hostname, hostname)) throw refusal(hostname, hostname);
        return;
      }
      const addresses = await new Promise<LookupAddress[]>((resolve, reject) =>
        dnsLookup(hostname, { all: true }, (error, found) =>
          error
            ? reject(new UrlRefusedError(`cannot resolve ${hostname}: ${error.code ?? error.message}`))
            : resolve(found),
        ),
      );
      const refused = addresses.find((entry) => !addressAllowed(entry.address, hostname));
      if (refused) throw refusal(hostname, refused.address);
    },
  };
}

/** The syntactic rules: an absolute http(s) URL without credentials. */
export function parseWebhookUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UrlRefusedError("not an absolute URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new UrlRefusedError("must be http or https");
  if (parsed.username || parsed.password) throw new UrlRefusedError("must not carry credentials");
  return parsed;
}

function refusal(hostname: string, address: string): UrlRefusedError {
  const where = hostname === address ? address : `${hostname} (${address})`;
  return new UrlRefusedError(
    `${where} is a loopback, private, link-local or metadata address; allow it with WEBHOOK_ALLOWED_HOSTS`,
  );
}

const stripBrackets = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1");

/** ::ffff:10.0.0.1 (or ::ffff:a00:1, as URL parsing writes it) is 10.0.0.1 in disguise. */
function unmapIpv4(address: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return address;
  const high = Number.parseInt(hex[1]!, 16);
  const low = Number.parseInt(hex[2]!, 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join(".");
}
