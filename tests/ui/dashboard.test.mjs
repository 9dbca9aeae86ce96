// The dashboard (/ui/dashboard) in headless Chromium: every view, its numbers checked against the
// API, a screenshot of each; the journey of a conversion reached from the conversion log.
//
// Run by scripts/ui-test.sh after conversion-log.test.mjs, with clicks and conversions of April
// 2026 stored, and:
//   UI_BASE           the server
//   UI_READ_KEY       a key with the read scope
//   UI_JOURNEY_EVENT  a sale with three touches and a delivered webhook dispatch
//   UI_SCREENSHOTS    the folder for the screenshots
//   UI_NODE_MODULES   the folder that holds playwright-core
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
const journeyEvent = env("UI_JOURNEY_EVENT");
const shots = env("UI_SCREENSHOTS");
const require = createRequire(`${env("UI_NODE_MODULES")}/`);
const { chromium } = require("playwright-core");

const MODELS = ["last_click", "first_click", "linear", "position_based", "time_decay"];
const RANGE = "from=2026-04-01&to=2026-05-01";

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
    if (message.type() === "error") pageErrors.push(`${message.text()} (${message.location().url})`);
  });
});

after(async () => {
  await browser?.close();
});

async function api(path) {
  const res = await fetch(base + path, { headers: { Authorization: `Bearer ${readKey}` } });
  assert.equal(res.status, 200, path);
  return res.json();
}

async function loaded(state) {
  await page.waitForFunction((want) => document.body.dataset.loaded === want, state);
}

async function cell(table, key, field) {
  return page.locator(`#${table} tr[data-key="${key}"] td[data-field="${field}"]`).innerText();
}

async function chartDatasets(id) {
  return page.evaluate((canvasId) => {
    const chart = Chart.getChart(document.getElementById(canvasId));
    return chart ? chart.data.datasets.map((d) => ({ label: d.label, sum: d.data.reduce((a, b) => a + b, 0) })) : null;
  }, id);
}

test("an analyst reads every view, switches models and follows a conversion's journey", async () => {
  const response = await page.goto(`${base}/ui/dashboard?from=2026-04-01&to=2026-04-30&interval=week#revenue`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /script-src 'self' 'sha256-/);
  assert.equal(await page.title(), "Dashboard · Convrelay");
  const keyInput = page.getByLabel("API key with the read scope");
  await keyInput.fill(readKey);
  await keyInput.press("Enter");

  // Revenue and conversions by channel: stacked charts, and totals equal to the API's.
  await loaded("revenue:last_click");
  let report = await api(`/v1/reports/conversions?${RANGE}&groupBy=channel&model=last_click`);
  const keys = report.data.map((r) => r.key);
  assert.ok(keys.includes("newsletter") && keys.includes("google_ads") && keys.includes("meta"), JSON.stringify(keys));
  for (const row of report.data) {
    assert.equal(await cell("table-revenue", row.key, "leads"), String(row.leads), row.key);
    assert.equal(await cell("table-revenue", row.key, "sales"), String(row.sales), row.key);
    assert.equal(await cell("table-revenue", row.key, "revenue"), String(row.revenue.USD ?? 0), row.key);
  }
  const revenueChart = await chartDatasets("chart-revenue");
  const newsletter = revenueChart.find((d) => d.label === "newsletter");
  assert.equal(newsletter.sum, 100);
  const stacked = await page.evaluate(() => Chart.getChart(document.getElementById("chart-revenue")).options.scales.y.stacked);
  assert.equal(stacked, true);
  await page.screenshot({ path: `${shots}/revenue.png`, fullPage: true });

  // The model switcher moves Ann's 100 USD: 40/20/40 under position based.
  await page.locator("#models label", { hasText: "Position based" }).click();
  await loaded("revenue:position_based");
  report = await api(`/v1/reports/conversions?${RANGE}&groupBy=channel&model=position_based`);
  for (const row of report.data) {
    assert.equal(await cell("table-revenue", row.key, "revenue"), String(row.revenue.USD ?? 0), row.key);
  }
  assert.equal(await cell("table-revenue", "meta", "revenue"), "20");
  assert.equal(await cell("table-revenue", "newsletter", "revenue"), "40");
  await page.screenshot({ path: `${shots}/revenue-position-based.png`, fullPage: true });

  // Every model side by side.
  await page.getByRole("tab", { name: "Model comparison" }).click();
  await loaded("models:position_based");
  for (const model of MODELS) {
    const r = await api(`/v1/reports/conversions?${RANGE}&groupBy=channel&model=${model}`);
    for (const row of r.data) {
      const shown = await page.locator(`#table-models tr[data-key="${row.key}"] td[data-model="${model}"]`).innerText();
      assert.equal(shown, String(row.revenue.USD ?? 0), `${model} ${row.key}`);
    }
  }
  assert.equal((await chartDatasets("chart-models")).length, 5);
  await page.screenshot({ path: `${shots}/models.png`, fullPage: true });

  // The funnel: clicks, leads, sales per channel.
  await page.getByRole("tab", { name: "Funnel" }).click();
  await loaded("funnel:position_based");
  await page.locator("#models label", { hasText: "Last click" }).click();
  await loaded("funnel:last_click");
  report = await api(`/v1/reports/conversions?${RANGE}&groupBy=channel&model=last_click`);
  for (const row of report.data) {
    assert.equal(await cell("table-funnel", row.key, "clicks"), String(row.clicks), row.key);
    assert.equal(await cell("table-funnel", row.key, "leads"), String(row.leads), row.key);
    assert.equal(await cell("table-funnel", row.key, "sales"), String(row.sales), row.key);
    const median = page.locator(`#table-funnel tr[data-key="${row.key}"] td[data-field="median"]`);
    assert.equal(await median.getAttribute("data-seconds"), String(row.medianTimeToConversionSeconds ?? "–"));
  }
  assert.equal(await cell("table-funnel", "google_ads", "clicks"), "3");
  const funnel = await chartDatasets("chart-funnel");
  assert.deepEqual(funnel.map((d) => d.label), ["Clicks", "Leads", "Sales"]);
  await page.screenshot({ path: `${shots}/funnel.png`, fullPage: true });

  // Delivery health: today's dispatches, per destination, equal to the API's counts.
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  await page.getByRole("tab", { name: "Delivery health" }).click();
  await loaded("health:last_click");
  await page.fill("#from", yesterday);
  await page.fill("#to", today);
  await page.evaluate(() => { document.body.dataset.loaded = ""; });
  await page.getByRole("button", { name: "Apply", exact: true }).click();
  await loaded("health:last_click");
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  const health = await api(`/v1/dispatches/health?from=${yesterday}T00:00:00Z&to=${tomorrow}T00:00:00Z&interval=hour`);
  assert.ok(health.data.length > 0);
  const destination = health.data[0].destination;
  for (const field of ["succeeded", "retrying", "failed"]) {
    const total = health.data.filter((r) => r.destination === destination).reduce((a, r) => a + r[field], 0);
    const shown = await page.locator(`#table-health tr[data-destination="${destination}"] td[data-field="${field}"]`).innerText();
    assert.equal(shown, String(total), field);
  }
  const succeeded = await page.locator(`#table-health tr[data-destination="${destination}"] td[data-field="succeeded"]`).innerText();
  assert.ok(Number(succeeded) >= 3, `succeeded: ${succeeded}`);
  await page.screenshot({ path: `${shots}/health.png`, fullPage: true });

  // From the conversion log to one conversion's journey.
  await page.goto(`${base}/ui`);
  const link = page.locator(`tr.dispatch a.journey[href="/ui/dashboard#journey=${journeyEvent}"]`);
  await link.click();
  await page.waitForURL(/\/ui\/dashboard#journey=/);
  await loaded("journey:last_click");
  const credit = await api(`/v1/events/${journeyEvent}/credit`);
  assert.equal(credit.touches.length, 3);
  for (const [n, touch] of credit.touches.entries()) {
    for (const model of MODELS) {
      const shown = await page.locator(`#journey-touches tr[data-n="${n}"] td[data-model="${model}"]`).innerText();
      assert.equal(shown, String(touch.shares[model]), `${n} ${model}`);
    }
  }
  assert.match(await page.locator("#journey-event").innerText(), /ann/);
  assert.match(await page.locator('#journey-routing li[data-dispatch="true"]').innerText(), /^webhook: sent/);
  const dispatch = page.locator("#journey .dispatch");
  assert.equal(await dispatch.count(), 1);
  assert.match(await dispatch.innerText(), /succeeded/);
  // A webhook is synchronous: confirmed when it answered, and the journey says so.
  assert.equal(await dispatch.locator('.confirmation[data-confirmation="confirmed"]').count(), 1);
  assert.ok((await dispatch.locator("tr.attempt").count()) >= 1);
  await page.screenshot({ path: `${shots}/journey.png`, fullPage: true });

  assert.deepEqual(offsite, [], "the page loads nothing from elsewhere");
  assert.deepEqual(pageErrors, [], "no script error or policy violation");
});
