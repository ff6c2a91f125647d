// Headless Chromium (Debian's package, installed by scripts/setup.mjs) driven by playwright-core, with the flags that
// keep it off the network, a fresh profile per launch, and a record of every request a page makes.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { tempDir } from "./fixtures.ts";
import { CHROMIUM_PATH, missingPartMessage } from "./machine-parts.ts";

/** Screenshots land here (gitignored), one per page a test looks at. */
export const ARTIFACTS_DIR = path.resolve("test-artifacts");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface TestBrowser {
  context: BrowserContext;
  /** A new page whose requests (every URL it asked for) are collected in `requests`. */
  newPage(): Promise<{ page: Page; requests: string[] }>;
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(missingPartMessage("chromium", `no ${CHROMIUM_PATH}`));
  const profile = tempDir("chromium");
  // A persistent context is how playwright takes --user-data-dir: a fresh, empty profile directory.
  const context = await chromium.launchPersistentContext(profile.dir, {
    executablePath: CHROMIUM_PATH,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      const requests: string[] = [];
      page.on("request", (request) => requests.push(request.url()));
      return { page, requests };
    },
    async screenshot(page, name) {
      mkdirSync(ARTIFACTS_DIR, { recursive: true });
      const file = path.join(ARTIFACTS_DIR, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await context.close();
      profile.remove();
    },
  };
}
