// The dashboard (/ui) and Bull Board (/ui/queues) in headless Chromium against the whole service on one real guest:
// sign in with the key, take a snapshot, watch it reach `compressed`, fork it, read a webhook's delivery log.
// One screenshot per page goes to test-artifacts/.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ARTIFACTS_DIR, launchBrowser, type TestBrowser } from "./helpers/browser.ts";
import { jsonOf } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";
import { startWebhookReceiver, type WebhookReceiver } from "./helpers/webhook-receiver.ts";

let service: RunningService;
let browser: TestBrowser;
let receiver: WebhookReceiver;
let page: Page;
let requests: string[];

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  service = await startService({ WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" });
  const endpoint = await service.api("/webhooks", { json: { url: receiver.url, event_types: ["snapshot.*"] } });
  expect(endpoint.status).toBe(201);
  const instance = await service.api("/instances", { json: { name: "ui-src", size: "256MB" } });
  expect((await jsonOf(instance)).state).toBe("Running");
  browser = await launchBrowser();
  ({ page, requests } = await browser.newPage());
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await service?.stop("SIGTERM");
  service?.remove();
  await receiver?.close();
});

const row = (attribute: string, value: string) => page.locator(`tr[${attribute}="${value}"]`);

/**
 * Fails with what the page and the API show, and keeps the service's log in test-artifacts/.
 */
async function failWithState(error: Error): Promise<never> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const log = path.join(ARTIFACTS_DIR, "dashboard-service.log");
  writeFileSync(log, service.output());
  const instances = await jsonOf(await service.api("/instances"));
  const shown = await page.locator("#instances").textContent();
  const problems = service
    .output()
    .split("\n")
    .filter((line) => /"level":(40|50|60)/.test(line))
    .slice(-20);
  throw new Error(
    [
      error.message,
      `#error: ${await page.locator("#error").textContent()}`,
      `instances on the page: ${shown}`,
      `instances from the API: ${JSON.stringify(instances)}`,
      `last warnings and errors of the service (whole log: ${log}):`,
      ...problems,
    ].join("\n"),
  );
}

describe("dashboard", () => {
  it("refuses a wrong key and signs in with the right one", async () => {
    await page.goto(`${service.baseUrl}/ui`);
    await page.getByLabel("API key").fill("wrong-key-0123456789");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("That key is not valid.").waitFor();
    await page.getByLabel("API key").fill(service.apiKey());
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#hosts").getByText(service.hostId()).waitFor();
    await row("data-instance", "ui-src").getByText("Running").waitFor();
    await page.locator("#queues").getByText(`compression-${service.hostId()}`).waitFor();
    expect(await page.evaluate('sessionStorage.getItem("snapfleet-api-key")')).toBe(service.apiKey());
  });

  it("takes a snapshot and shows its compression progress until compressed", async () => {
    await page.locator("#compression").selectOption("zstd:1");
    await row("data-instance", "ui-src").getByRole("button", { name: "Snapshot" }).click();
    const snapshotRow = page.locator("#snapshots tr[data-snapshot]");
    await snapshotRow.first().waitFor();
    await snapshotRow.getByText("compressed", { exact: true }).waitFor({ timeout: 60_000 });
    const bar = snapshotRow.locator("progress");
    const fraction = (element: unknown) =>
      (element as { value: number; max: number }).value / (element as { max: number }).max;
    expect(await bar.evaluate(fraction)).toBe(1);
    expect(await snapshotRow.locator("td").nth(5).textContent()).toMatch(/^[\d.]+ %$/);
  });

  it("forks the snapshot from its row", async () => {
    const snapshotRow = page.locator("#snapshots tr[data-snapshot]");
    const name = snapshotRow.getByLabel("fork name");
    await name.fill("ui-fork");
    // The tables are rebuilt on every refresh (at the latest after 5 s): what was typed survives it.
    const typedInto = await name.elementHandle();
    await page.waitForFunction((input) => !input?.isConnected, typedInto, { timeout: 10_000 });
    expect(await name.inputValue()).toBe("ui-fork");
    await snapshotRow.getByRole("button", { name: "Fork" }).click();
    await row("data-instance", "ui-fork")
      .getByText("Running")
      .waitFor({ timeout: 40_000 })
      .catch((error: Error) => failWithState(error));
    await page
      .locator("#error")
      .getByText(/./)
      .waitFor({ state: "detached" })
      .catch(() => {});
    expect(await page.locator("#error").textContent()).toBe("");
    await browser.screenshot(page, "dashboard");
  });

  it("shows a webhook endpoint's delivery log", async () => {
    await page.locator("#webhooks").getByRole("button", { name: "Deliveries" }).click();
    await page.locator("#deliveries").getByText("snapshot.compression.completed").waitFor();
    await page.locator("#deliveries").getByText("succeeded").first().waitFor();
    await page.locator("#deliveries-title").scrollIntoViewIfNeeded();
    await browser.screenshot(page, "dashboard-webhooks");
  });

  it("asked nothing of any other origin", () => {
    expect(requests.filter((url) => !url.startsWith(`${service.baseUrl}/`))).toEqual([]);
  });
});

describe("Bull Board", () => {
  it("needs the key: no cookie, no board", async () => {
    expect((await fetch(`${service.baseUrl}/ui/queues`)).status).toBe(401);
    expect((await service.api("/ui/queues")).status).toBe(200);
  });

  it("opens with the cookie the sign-in set, lists every queue and loads nothing from elsewhere", async () => {
    const board = await browser.newPage();
    await board.page.goto(`${service.baseUrl}/ui/queues`);
    await board.page.getByText(`host-${service.hostId()}`).first().waitFor({ timeout: 30_000 });
    await board.page.getByText("webhooks").first().waitFor();
    await browser.screenshot(board.page, "bull-board");
    expect(board.requests.filter((url) => !url.startsWith(`${service.baseUrl}/`))).toEqual([]);
  });
});
