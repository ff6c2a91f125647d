import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers/fixtures.ts";
import { activeSecrets, generateSigningSecret, loadSecretKey, rotateSecrets, SecretBox } from "./secrets.ts";
import { signDelivery } from "./signing.ts";

describe("signing secrets", () => {
  it("seals and opens secrets, and refuses a tampered or foreign box", () => {
    const box = new SecretBox(randomBytes(32));
    const secrets = [{ secret: generateSigningSecret(), expires_at: null }];
    const sealed = box.seal(secrets);
    expect(sealed).not.toContain(secrets[0]!.secret);
    expect(box.open(sealed)).toEqual(secrets);
    expect(() => new SecretBox(randomBytes(32)).open(sealed)).toThrow();
    const tampered = `${sealed.slice(0, -4)}AAAA`;
    expect(() => box.open(tampered)).toThrow();
  });

  it("keeps the previous secret signing for a day after a rotation", () => {
    const first = generateSigningSecret();
    const now = new Date("2026-01-01T00:00:00Z");
    const { secret, secrets } = rotateSecrets([{ secret: first, expires_at: null }], now);
    expect(activeSecrets(secrets, now)).toEqual([secret, first]);
    expect(activeSecrets(secrets, new Date("2026-01-02T00:00:01Z"))).toEqual([secret]);
  });

  it("signs so that standardwebhooks verifies with either secret", () => {
    const [current, previous] = [generateSigningSecret(), generateSigningSecret()];
    const body = JSON.stringify({ type: "snapshot.created", timestamp: new Date().toISOString(), data: {} });
    const headers = signDelivery("evt_1", body, [current, previous]);
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2);
    for (const secret of [current, previous]) expect(new Webhook(secret).verify(body, { ...headers })).toBeTruthy();
    expect(() => new Webhook(generateSigningSecret()).verify(body, { ...headers })).toThrow();
    expect(() => new Webhook(current).verify(`${body} `, { ...headers })).toThrow();
  });

  it("creates the key file once and reads the same key from then on", () => {
    const data = tempDir("webhook-key");
    try {
      const key = loadSecretKey(undefined, data.dir);
      expect(key).toHaveLength(32);
      expect(loadSecretKey(undefined, data.dir)).toEqual(key);
      const configured = randomBytes(32);
      expect(loadSecretKey(configured.toString("base64"), data.dir)).toEqual(configured);
    } finally {
      data.remove();
    }
  });
});
