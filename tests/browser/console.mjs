// Drives the web console in headless Chromium: sign in, open the waiting request, approve it.
// Usage: node console.mjs BASE_URL TOKEN SCREENSHOT_PATH [CHROMIUM_PATH [README_SCREENSHOT]]
// README_SCREENSHOT: where to save the request page as a reviewer first sees it (the README's
// picture of the console, kept current by this test).
import { chromium } from "playwright-core";

const [base, token, screenshot, executablePath = "/usr/bin/chromium", readmeShot] = process.argv.slice(2);
const fail = (msg) => { console.error(`console test: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  const violations = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });

  const first = await page.goto(`${base}/console`);
  if (!first.headers()["content-security-policy"]?.includes("default-src 'none'")) fail("no strict CSP");
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/console`), page.click("#sign-in")]);
  const who = await page.textContent("#whoami");
  if (who !== "alice") fail(`signed in as ${who}`);
  if (page.url().includes(token)) fail("the token is in a URL");

  const link = page.locator("#pending a.request").first();
  await link.click();
  await page.waitForSelector("#context");
  const title = await page.textContent("h1");
  if (title !== "billing::export_customers") fail(`the request page is titled ${title}`);
  const context = await page.textContent("#context");
  for (const want of ["ops-bot", "dana", "weekly churn report", "redacted", "1 more from data-owners"]) {
    if (!context.includes(want)) fail(`the request page lacks ${want}: ${context}`);
  }
  if ((await page.content()).includes("sk-live-123")) fail("a redacted argument is shown");
  if (readmeShot) await page.screenshot({ path: readmeShot, fullPage: true });

  await page.fill("#comment", "approved in the console");
  await Promise.all([page.waitForLoadState("load"), page.click("#approve")]);
  const status = await page.textContent("#status");
  const message = await page.textContent("#message");
  await page.screenshot({ path: screenshot, fullPage: true });
  if (status !== "approved") fail(`status after approving: ${status} (${message})`);
  const audit = await page.textContent("#audit");
  for (const e of ["requested", "review_accepted", "decided"]) {
    if (!audit.includes(e)) fail(`the audit trail lacks ${e}: ${audit}`);
  }

  // The history lists it, decided.
  await Promise.all([page.waitForLoadState("load"), page.click("#history-link")]);
  const history = await page.textContent("#decided");
  if (!history.includes("billing::export_customers") || !history.includes("approved by alice")) {
    fail(`the history does not show the decision: ${history}`);
  }
  if (violations.length) fail(`CSP violations: ${violations.join("; ")}`);
  console.log(JSON.stringify({ ok: true, status, message }));
} finally {
  await browser.close();
}
