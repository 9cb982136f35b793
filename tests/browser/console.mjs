// Drives the web console in headless Chromium: sign in, open the waiting request, approve it;
// then open the waiting export whose limit is editable, try a limit the policy denies, and
// approve it with a smaller limit.
// Usage: node console.mjs BASE_URL TOKEN SCREENSHOT_PATH [CHROMIUM_PATH [README_SCREENSHOT]]
// README_SCREENSHOT: where to save the editable request's page as a reviewer first sees it
// (the README's picture of the console, kept current by this test).
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

  const link = page.locator("#pending a.request", { hasText: "billing::export_customers" });
  await link.click();
  await page.waitForSelector("#context");
  const title = await page.textContent("h1");
  if (title !== "billing::export_customers") fail(`the request page is titled ${title}`);
  const context = await page.textContent("#context");
  for (const want of ["ops-bot", "dana", "weekly churn report", "redacted", "1 more from data-owners"]) {
    if (!context.includes(want)) fail(`the request page lacks ${want}: ${context}`);
  }
  if ((await page.content()).includes("sk-live-123")) fail("a redacted argument is shown");

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
  // Approve the editable export with changes: a limit the policy denies is refused on the
  // page and the request stays open; a smaller one is a new call, approved by alice's edit.
  await Promise.all([page.waitForLoadState("load"), page.click("#pending-link")]);
  await Promise.all([
    page.waitForLoadState("load"),
    page.locator("#pending a.request", { hasText: "billing::export_limited" }).click(),
  ]);
  if ((await page.inputValue("#set-limit")) !== "5000") fail("the form does not show the limit asked for");
  if (readmeShot) await page.screenshot({ path: readmeShot, fullPage: true });
  await page.fill("#set-limit", "2000000");
  await Promise.all([page.waitForLoadState("load"), page.click("#approve-edited")]);
  const refused = await page.textContent("#message");
  if (!refused.includes("never more than a million rows")) fail(`an edit into a denied call: ${refused}`);
  if ((await page.textContent("#status")) !== "pending") fail("a refused edit decided the request");
  await page.fill("#set-limit", "500");
  await Promise.all([page.waitForLoadState("load"), page.click("#approve-edited")]);
  const edited = await page.textContent("#status");
  const editOf = await page.textContent("#edit-of");
  if (edited !== "approved") fail(`status of the edit: ${edited} (${await page.textContent("#message")})`);
  for (const want of ["alice", "5000", "500"]) {
    if (!editOf.includes(want)) fail(`the edit's page lacks ${want}: ${editOf}`);
  }
  await Promise.all([page.waitForLoadState("load"), page.click("#edit-of a")]);
  if ((await page.textContent("#status")) !== "edited") fail("the original is not shown as edited");

  if (violations.length) fail(`CSP violations: ${violations.join("; ")}`);
  console.log(JSON.stringify({ ok: true, status, message, edited }));
} finally {
  await browser.close();
}
