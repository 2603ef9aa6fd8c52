// The dashboards in a real browser: Debian's chromium driven by playwright-core, against
// the real binary on a temp home. Logs in as operator, retries a stuck job with its
// button, reads the same counts on v1, checks a viewer sees no retry button and gets 403
// for a forged post, runs axe on every page, saves screenshots, and fails on any request
// to another origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const BIN = process.env.ECHOPILOT_BIN || join(root, "target", "debug", "echopilot");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.E2E_ARTIFACTS || join(here, "artifacts");
const ADMIN = "e2e-admin-key-0123456789abcdefghij";
const OPERATOR = "e2e-operator-key-0123456789abcdefgh";
const VIEWER = "e2e-viewer-key-0123456789abcdefghij";
const WORKER = "e2e-worker-key-0123456789abcdefghij";
const WEBHOOK_SECRET = "whsec_e2e_0123456789abcdef";
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let server, base, home, browser;
// What seed() made (the first test), for the later ones.
let seeded = {};
const foreign = [];

async function api(method, path, key, body) {
  const r = await fetch(base + path, {
    method,
    headers: { "X-Dash-Key": key, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await r.json();
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

// A Stripe event from the fixtures, signed as Stripe signs (HMAC-SHA256 of "t.body").
async function stripe(kind, id, fields = {}) {
  const ev = JSON.parse(readFileSync(join(root, "tests", "fixtures", "stripe", `${kind}.json`), "utf8"));
  const t = Math.floor(Date.now() / 1000);
  ev.id = id;
  ev.created = t;
  Object.assign(ev.data.object, fields);
  const body = JSON.stringify(ev);
  const v1 = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
  const r = await fetch(base + "/api/stripe/webhook", {
    method: "POST", body, headers: { "content-type": "application/json", "Stripe-Signature": `t=${t},v1=${v1}` },
  });
  assert.equal(r.status, 200, `${kind}: ${await r.text()}`);
}

async function seed() {
  // Payments: one paid, one failed, one checkout that never got its payment; then a
  // recorded reconciliation, for the payments page.
  await stripe("payment_intent.succeeded", "evt_e2e_1");
  await stripe("payment_intent.payment_failed", "evt_e2e_2");
  await stripe("checkout.session.completed", "evt_e2e_3");
  await api("POST", "/api/payments/reconcile", OPERATOR);
  const kinds = ["email.send_receipt", "report.daily_digest", "crm.sync_contacts", "invoice.render_pdf"];
  for (let i = 0; i < 12; i++) {
    await api("POST", "/api/jobs", OPERATOR, { kind: kinds[i % kinds.length], queue: i % 3 ? "default" : "notifications", payload: { n: i } });
  }
  await api("POST", "/api/jobs", OPERATOR, { kind: "webhook.deliver", payload: { html: "<script>alert(1)</script>" } });
  // A dead job: one attempt, failed.
  const dead = await api("POST", "/api/jobs", OPERATOR, { kind: "stripe.refund_sync", queue: "payments", max_attempts: 1 });
  await api("POST", "/api/jobs/claim", WORKER, { kinds: ["stripe.refund_sync"], worker: "worker-1" });
  await api("POST", `/api/job/${dead.job.id}/fail`, WORKER, { worker: "worker-1", error: "stripe: no such charge (resource_missing)" });
  // A stuck job: claimed with a one-second lease and never heard from again.
  const stuck = await api("POST", "/api/jobs", OPERATOR, { kind: "stripe.reconcile", queue: "payments" });
  await api("POST", "/api/jobs/claim", WORKER, { kinds: ["stripe.reconcile"], worker: "worker-2", lease_secs: 1 });
  await new Promise((r) => setTimeout(r, 1500));
  // A flag change, an incident and a snapshot, for their pages and the chart markers.
  await api("PUT", "/api/flags/executor.command", OPERATOR, { enabled: false, note: "allowlist review" });
  const inc = await api("POST", "/api/incidents", OPERATOR, { title: "Stripe webhook outage", severity: "P1", impact: "Payments not confirmed" });
  await api("POST", "/api/backups", ADMIN);
  return { stuckId: stuck.job.id, deadId: dead.job.id, incidentId: inc.incident.id };
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build first`);
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  home = mkdtempSync(join(tmpdir(), "echopilot-e2e-"));
  server = spawn(BIN, ["serve", "--home", home, "--bind", "127.0.0.1:0"], {
    env: {
      PATH: process.env.PATH, RUST_LOG: "warn", ALLOW_DIRTY: "true",
      DASHBOARD_KEY: ADMIN, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ROLES_JSON: JSON.stringify({ [OPERATOR]: "operator", [VIEWER]: "viewer", [WORKER]: "worker" }),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: server.stdout });
  base = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error("server did not start")), 15000);
    lines.once("line", (l) => { clearTimeout(t); res(l.split(/\s+/).find((w) => w.startsWith("http://")).replace(/\/$/, "")); });
  });
  lines.on("line", () => {});
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    // The home goes only after the server has stopped writing to it.
    const exited = new Promise((res) => server.once("exit", res));
    server.kill("SIGTERM");
    await Promise.race([exited, new Promise((res) => setTimeout(res, 10000))]);
  }
  if (home) rmSync(home, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

async function context(opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...opts });
  ctx.on("request", (r) => {
    const u = new URL(r.url());
    if (!["data:", "about:"].includes(u.protocol) && u.origin !== base) foreign.push(r.url());
  });
  return ctx;
}

async function login(page, key) {
  await page.goto(base + "/login");
  await page.fill("#key", key);
  await Promise.all([page.waitForURL(/\/dashboard$/), page.click("button[type=submit]")]);
}

async function axe(page, name) {
  const r = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${name}: ${v.id} (${v.impact}) ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`),
    [],
  );
}

async function countsOnV2(page) {
  await page.goto(base + "/dashboard/jobs");
  const out = {};
  for (const tab of await page.locator("nav.tabs a").all()) {
    const label = (await tab.innerText()).trim().split(/\s+/);
    out[label[0].toLowerCase()] = label[1].replace(/,/g, "");
  }
  return out;
}

test("operator: overview, retry a stuck job, same counts on v1, axe on every page", async () => {
  seeded = await seed();
  const { stuckId, deadId, incidentId } = seeded;
  const ctx = await context();
  const page = await ctx.newPage();
  await login(page, OPERATOR);
  assert.match(await page.locator("h1").first().innerText(), /Overview/);
  assert.equal(await page.locator("svg.chart").count() >= 4, true, "the overview draws its charts");
  await page.screenshot({ path: join(ARTIFACTS, "overview-1280.png"), fullPage: true });
  await axe(page, "overview");
  // The range links work without script; the markers of the seeded flag change and
  // incident are on the charts.
  await page.click("nav.range a:has-text('7 d')");
  await page.waitForURL(/range=7d/);
  assert.equal(await page.locator("nav.range a[aria-current]").innerText(), "7 d");
  await axe(page, "overview 7d");
  assert.ok(await page.locator("svg.chart g.mk-incident").count() >= 1, "an incident marker");
  assert.ok(await page.locator("svg.chart g.mk-flag").count() >= 1, "a flag marker");

  // The stuck job, from the Stuck tab to its page, retried with the button.
  await page.goto(base + "/dashboard/jobs?status=stuck");
  await page.click(`a[href="/dashboard/jobs/${stuckId}"]`);
  await axe(page, "job");
  await page.screenshot({ path: join(ARTIFACTS, "job-1280.png"), fullPage: true });
  assert.match(await page.locator("h1").innerText(), new RegExp(stuckId));
  await Promise.all([page.waitForURL(/notice=retried/), page.click("button:has-text('Retry')")]);
  assert.match(await page.locator(".notice").innerText(), /re-queued/);
  const after = await api("GET", `/api/job/${stuckId}`, VIEWER);
  assert.equal(after.job.status, "queued", "the job moved back to the queue");

  // The escaped payload shows as text.
  const list = await api("GET", "/api/jobs?kind=webhook.deliver", VIEWER);
  await page.goto(base + `/dashboard/jobs/${list.jobs[0].id}`);
  assert.match(await page.locator("#payload").innerText(), /<script>alert\(1\)<\/script>/);

  const v2 = await countsOnV2(page);
  await page.screenshot({ path: join(ARTIFACTS, "jobs-1280.png"), fullPage: true });
  await axe(page, "jobs");
  await page.goto(base + "/dashboard/jobs?status=dead");
  await axe(page, "jobs dead");
  for (const p of ["/dashboard/schedules", "/dashboard/audit", "/dashboard/audit?ok=false", "/dashboard/alerts", "/dashboard/payments",
    "/dashboard/flags", "/dashboard/incidents", `/dashboard/incidents/${incidentId}`, "/dashboard/backups"]) {
    await page.goto(base + p);
    await axe(page, p);
  }

  // Toggle to v1: the same counts.
  await page.click("a:has-text('Legacy v1')");
  await page.waitForURL(/\/dashboard\/v1/);
  for (const s of ["queued", "running", "scheduled", "stuck", "dead"]) {
    const v1 = (await page.locator(`td[data-count=${s}]`).innerText()).replace(/,/g, "");
    assert.equal(v1, v2[s], `${s}: v1 ${v1}, v2 ${v2[s]}`);
  }
  assert.equal(await page.locator("script").count(), 0, "v1 has no JavaScript");
  await page.screenshot({ path: join(ARTIFACTS, "v1-1280.png"), fullPage: true });
  await axe(page, "v1");
  assert.ok(deadId);
  await ctx.close();
});

test("screens of every page at 1280 and 390 px, light and dark", async () => {
  const pages = [
    ["overview", "/dashboard"], ["jobs", "/dashboard/jobs"], ["payments", "/dashboard/payments"],
    ["flags", "/dashboard/flags"], ["incidents", "/dashboard/incidents"],
    ["incident", `/dashboard/incidents/${seeded.incidentId}`], ["backups", "/dashboard/backups"],
  ];
  const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 };
  for (const [name, opts] of [
    ["1280", {}], ["phone-390", phone], ["dark-1280", { colorScheme: "dark" }],
    ["dark-390", { ...phone, colorScheme: "dark" }],
  ]) {
    const ctx = await context(opts);
    const page = await ctx.newPage();
    await login(page, OPERATOR);
    for (const [slug, path] of pages) {
      await page.goto(base + path);
      await page.screenshot({ path: join(ARTIFACTS, `${slug}-${name}.png`), fullPage: true });
      await axe(page, `${slug} ${name}`);
    }
    await ctx.close();
  }
});

test("viewer: no retry button, and a forged post is refused", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(base + "/login");
  await axe(page, "login");
  await login(page, VIEWER);
  await page.goto(base + "/dashboard/jobs?status=dead");
  assert.equal(await page.locator("button:has-text('Retry')").count(), 0);
  assert.equal(await page.locator("form[method=post]:not([action='/logout'])").count(), 0);
  const csrf = await page.locator("input[name=csrf]").first().getAttribute("value");
  const dead = await api("GET", "/api/jobs?status=dead", VIEWER);
  const r = await page.request.post(base + `/dashboard/jobs/${dead.jobs[0].id}/retry`, {
    form: { csrf }, maxRedirects: 0,
  });
  assert.equal(r.status(), 403);
  const still = await api("GET", `/api/job/${dead.jobs[0].id}`, VIEWER);
  assert.equal(still.job.status, "dead", "the forged post changed nothing");
  await ctx.close();
});

test("no page asked another origin for anything", () => {
  assert.deepEqual(foreign, []);
});
