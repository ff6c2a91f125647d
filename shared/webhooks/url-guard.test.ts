import { describe, expect, it } from "vitest";
import { createUrlGuard, UrlRefusedError } from "./url-guard.ts";

describe("webhook URL guard", () => {
  const guard = createUrlGuard();

  it.each([
    "http://127.0.0.1:8080/hooks",
    "http://localhost/hooks",
    "http://10.1.2.3/",
    "http://172.20.0.1/",
    "http://192.168.1.10/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::]/",
    "http://[64:ff9b::a00:1]/", // NAT64 (well-known prefix) of 10.0.0.1
    "http://[64:ff9b::8.8.8.8]/", // NAT64 of a public address: the translator is on the inside
    "http://[64:ff9b:1::a9fe:a9fe]/", // NAT64 local-use prefix
    "http://[2002:c0a8:101::1]/", // 6to4 of 192.168.1.1
    "http://[2002:7f00:1::1]/", // 6to4 of 127.0.0.1
    "http://[2001::1]/", // Teredo
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", // Teredo
    "http://[::10.0.0.1]/", // IPv4-compatible
    "http://[::127.0.0.1]/",
    "http://[::8.8.8.8]/", // IPv4-compatible, deprecated whatever it carries
    "http://[fec0::1]/", // site-local
    "http://[fd12:3456::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/", // documentation
    "http://192.0.2.1/", // documentation
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://0x7f000001/", // 127.0.0.1 spelled in hex
    "http://2130706433/", // 127.0.0.1 as one number
  ])("refuses %s by default", async (url) => {
    await expect(guard.check(url)).rejects.toBeInstanceOf(UrlRefusedError);
  });

  it.each(["ftp://example.com/", "file:///etc/passwd", "not a url", "http://user:pass@example.com/"])(
    "refuses %s as not a plain http(s) URL",
    async (url) => {
      await expect(guard.check(url)).rejects.toBeInstanceOf(UrlRefusedError);
    },
  );

  it("accepts public addresses", async () => {
    await expect(guard.check("https://93.184.215.14/hooks")).resolves.toBeUndefined();
    await expect(guard.check("http://[2606:4700::1111]/")).resolves.toBeUndefined();
  });

  it("opens exactly what the allow-list names: an address, a network or a host name", async () => {
    const allowing = createUrlGuard(["127.0.0.1", "10.0.0.0/8", "localhost"]);
    await expect(allowing.check("http://127.0.0.1:9/")).resolves.toBeUndefined();
    await expect(allowing.check("http://10.200.0.5/")).resolves.toBeUndefined();
    await expect(allowing.check("http://localhost/")).resolves.toBeUndefined();
    await expect(allowing.check("http://127.0.0.2/")).rejects.toBeInstanceOf(UrlRefusedError);
    await expect(allowing.check("http://192.168.0.1/")).rejects.toBeInstanceOf(UrlRefusedError);
  });

  it("refuses a blocked address at connect time through its lookup", async () => {
    const error = await new Promise<Error | null>((resolve) =>
      guard.lookup("localhost", {}, (lookupError) => resolve(lookupError)),
    );
    expect(error).toBeInstanceOf(UrlRefusedError);
  });
});
