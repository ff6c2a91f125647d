// Which webhook URLs may be called: http(s) only, and only to public unicast addresses (ipaddr.js's ranges: no
// loopback, private, link-local, metadata, carrier-grade NAT, NAT64, 6to4, Teredo, site-local, reserved...) unless
// the allow-list (WEBHOOK_ALLOWED_HOSTS) names the host, the address or its network.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * Whether an address is public unicast. IPv4-mapped addresses are judged as the IPv4 address they carry, and the
 * deprecated IPv4-compatible form (::a.b.c.d, which ipaddr.js calls unicast) is refused outright.
 */
export function isPublicUnicast(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === "ipv6" && isIpv4Compatible(parsed as ipaddr.IPv6)) return false;
  return parsed.range() === "unicast";
}

/** ::/96 (zero in its first 96 bits): ::a.b.c.d reaches a.b.c.d on stacks that still honour it. */
function isIpv4Compatible(address: ipaddr.IPv6): boolean {
  return address.parts.slice(0, 6).every((part) => part === 0);
}

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
    if (!ipaddr.isValid(address)) return false;
    const normalized = ipaddr.process(address).toString();
    return allowed.check(normalized, isIP(normalized) === 4 ? "ipv4" : "ipv6") || isPublicUnicast(normalized);
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
    `${where} is not a public unicast address (loopback, private, link-local, metadata, NAT64, 6to4, Teredo, reserved...); allow it with WEBHOOK_ALLOWED_HOSTS`,
  );
}

const stripBrackets = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1");
