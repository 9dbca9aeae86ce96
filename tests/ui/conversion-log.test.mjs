// The conversion log page (/ui) in headless Chromium, clicked through as an operator would:
// paste a read key, find the failed dispatch, filter, open it, retry it with an admin key.
//
// Run by scripts/ui-test.sh, which starts the server with one failed webhook dispatch and sets:
//   UI_BASE          the server, e.g. http://127.0.0.1:PORT
//   UI_READ_KEY      a key with the read scope only
//   UI_ADMIN_KEY     a key with the admin scope
//   UI_DISPATCH_ID   the failed dispatch
//   UI_DESTINATION   its destination
//   UI_SCREENSHOT    where to save a screenshot
//   UI_NODE_MODULES  the folder that holds playwright-core
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/ui-test.sh)`);
  return value;
};
const base = env("UI_BASE");
const readKey = env("UI_READ_KEY");
const adminKey = env("UI_ADMIN_KEY");
const dispatchId = env("UI_DISPATCH_ID");
const destination = env("UI_DESTINATION");
const require = createRequire(`${env("UI_NODE_MODULES")}/`);
const { chromium } = require("playwright-core");

let browser;
let page;
const offsite = [];
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:")) offsite.push(request.url());
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    // The 403 of the retry with a read key is expected; anything else is not.
    if (message.type() === "error" && !/status of 403/.test(message.text())) {
      pageErrors.push(`${message.text()} (${message.location().url})`);
    }
  });
});

after(async () => {
  await browser?.close();
});

const row = () => page.locator(`tr.dispatch[data-id="${dispatchId}"]`);

test("an operator finds a failed dispatch, filters, opens it and retries it with an admin key", async () => {
  // Nothing without a key: the page asks for one, and the key form is usable from the keyboard.
  const response = await page.goto(`${base}/ui`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /script-src 'sha256-/);
  assert.equal(await page.title(), "Conversion log · Convrelay");
  const keyInput = page.getByLabel("API key with the read scope");
  await keyInput.waitFor();
  await keyInput.fill(readKey);
  await keyInput.press("Enter");

  // The failed dispatch is listed with its destination, type, event and attempts.
  await row().waitFor();
  assert.equal(await row().getAttribute("data-status"), "failed");
  const cells = await row().locator("td").allInnerTexts();
  assert.match(cells[1], /failed/);
  assert.equal(await row().locator("td").nth(2).locator("[data-full]").getAttribute("data-full"), destination);
  assert.equal(cells[3], "webhook");
  assert.match(await row().locator("td").nth(4).locator("[data-full]").getAttribute("data-full"), /^evt_[0-9a-f]{32}$/);
  assert.equal(cells[5], "2");
  assert.match(cells[6], /500/);
  assert.match(cells[7], /UTC$/);
  // The stats at the top count it and the older failed one.
  assert.equal(await page.locator('.stat[data-status="failed"] .n').innerText(), "2");
  assert.equal(await page.locator("tr.dispatch").count(), 2);

  // The key is remembered: a page of one goes straight to the list, and "Load more" follows
  // nextCursor to the older dispatch.
  await page.goto(`${base}/ui?limit=1`);
  await row().waitFor();
  assert.equal(await page.getByLabel("API key with the read scope").isVisible(), false);
  assert.equal(await page.locator("tr.dispatch").count(), 1);
  const more = page.getByRole("button", { name: "Load more", exact: true });
  await more.click();
  await page.locator("tr.dispatch").nth(1).waitFor();
  assert.equal(await page.locator("tr.dispatch").count(), 2);
  await more.waitFor({ state: "hidden" });
  assert.equal(await page.locator("#count").innerText(), "2 shown");
  await page.goto(`${base}/ui`);
  await row().waitFor();

  // Filter by status, then by destination: the choice goes into the address too.
  await page.getByLabel("Status", { exact: true }).selectOption("failed");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.waitForURL(/status=failed/);
  await row().waitFor();
  const statuses = await page.locator("tr.dispatch").evaluateAll((rows) => rows.map((r) => r.dataset.status));
  assert.deepEqual([...new Set(statuses)], ["failed"]);
  await page.getByLabel("Destination", { exact: true }).selectOption(destination);
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.waitForURL(new RegExp(`destination=${destination}`));
  await row().waitFor();
  // A status with no dispatch says so.
  await page.getByLabel("Status", { exact: true }).selectOption("cancelled");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No dispatches (status cancelled").waitFor();
  await page.getByLabel("Status", { exact: true }).selectOption("failed");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await row().waitFor();

  // Open it by clicking the row: every attempt, with the receiver's HTTP 500.
  await row().locator("td").nth(2).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  assert.match(await dialog.getByRole("heading", { level: 2 }).innerText(), new RegExp(dispatchId));
  const attempts = dialog.locator("tr.attempt");
  assert.equal(await attempts.count(), 2);
  for (let i = 0; i < 2; i++) {
    assert.equal(await attempts.nth(i).locator("td.http").innerText(), "500");
  }
  // The receiver's markup is shown as text, never rendered.
  const excerpt = dialog.locator("pre.excerpt").first();
  assert.match(await excerpt.innerText(), /<b>boom<\/b>/);
  assert.equal(await excerpt.locator("b").count(), 0);

  // Retry with the read key: refused (403), so the page asks for an admin key.
  await dialog.getByRole("button", { name: "Retry this dispatch" }).click();
  const adminInput = dialog.getByLabel("Retrying needs an API key with the admin scope");
  await adminInput.waitFor();
  assert.match(await dialog.getByRole("alert").innerText(), /lacks the `admin` scope/);
  await adminInput.fill(adminKey);
  await dialog.getByRole("button", { name: "Retry with this key" }).click();
  await dialog.getByText("Queued again").waitFor();
  // The page follows it: a third attempt, answered 200.
  await dialog.locator("tr.attempt").nth(2).locator("td.http", { hasText: "200" }).waitFor({ timeout: 20_000 });
  await dialog.getByText("Queued again, and delivered.").waitFor();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });

  // Back to every status; refresh until the row shows the success.
  await page.getByRole("button", { name: "Clear", exact: true }).click();
  await page.waitForURL((url) => !url.search.includes("status="));
  const deadline = Date.now() + 20_000;
  for (;;) {
    await page.getByRole("button", { name: "Refresh", exact: true }).click();
    await row().waitFor();
    if ((await row().getAttribute("data-status")) === "succeeded") break;
    assert.ok(Date.now() < deadline, "the retried dispatch never showed as succeeded");
    await page.waitForTimeout(250);
  }
  assert.equal(await row().locator("td").nth(5).innerText(), "3");
  assert.equal(await page.locator('.stat[data-status="succeeded"] .n').innerText(), "1");
  assert.equal(await page.locator('.stat[data-status="failed"] .n').innerText(), "1");
  // A webhook answers synchronously: the platform's confirmation is there at once, and the list
  // filters by it.
  assert.equal(await row().locator(".confirmation").getAttribute("data-confirmation"), "confirmed");
  await page.getByLabel("Confirmation", { exact: true }).selectOption("confirmed");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.waitForURL(/confirmation=confirmed/);
  // The URL changes before the filtered list arrives: wait (bounded) for the list to settle.
  await page
    .waitForFunction(() => document.querySelectorAll("tr.dispatch").length === 1, null, {
      timeout: 10_000,
    })
    .catch(() => {});
  assert.equal(await page.locator("tr.dispatch").count(), 1);
  await page.getByLabel("Confirmation", { exact: true }).selectOption("failed");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No dispatches (confirmation failed").waitFor();
  await page.getByRole("button", { name: "Clear", exact: true }).click();
  await row().waitFor();
  await page.screenshot({ path: env("UI_SCREENSHOT"), fullPage: true });

  // Forget the key: back to the key form, nothing kept in the browser.
  await page.getByRole("button", { name: "Forget key" }).click();
  await page.getByLabel("API key with the read scope").waitFor();
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  assert.equal(await page.locator("tr.dispatch").count(), 0);

  assert.deepEqual(offsite, [], "the page loads nothing from elsewhere");
  assert.deepEqual(pageErrors, [], "no script error or policy violation");
});
