// /docs in a real browser: Swagger UI renders our OpenAPI document from files the API serves, and the page
// asks nothing of any other origin.
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestApp, type TestApp } from "./helpers/app.ts";
import { launchBrowser, type TestBrowser } from "./helpers/browser.ts";
import { freePort } from "./helpers/fixtures.ts";
import { describeWith } from "./helpers/needs.ts";

describeWith("chromium", "GET /docs in Chromium", () => {
  let t: TestApp;
  let server: ServerType;
  let browser: TestBrowser;
  let baseUrl: string;

  beforeAll(async () => {
    t = await createTestApp();
    const port = await freePort();
    server = serve({ fetch: t.app.fetch, port, hostname: "127.0.0.1" });
    baseUrl = `http://127.0.0.1:${port}`;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server.close(resolve));
    await t.close();
  });

  it("renders every operation with no request to another origin", async () => {
    const { page, requests } = await browser.newPage();
    await page.goto(`${baseUrl}/docs`);
    await page.getByText("/snapshots/{snapshotId}/fork").first().waitFor({ timeout: 20_000 });
    expect(await page.locator(".opblock").count()).toBeGreaterThan(20);
    await browser.screenshot(page, "docs");
    expect(requests.length).toBeGreaterThan(3);
    expect(requests.filter((url) => !url.startsWith(`${baseUrl}/`) && !url.startsWith("data:"))).toEqual([]);
  });
});
