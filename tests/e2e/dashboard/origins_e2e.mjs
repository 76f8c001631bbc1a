// Drives the dashboard's Origins page in Debian's chromium through playwright-core: signs in,
// creates an HTTP origin from the form and sees it listed, sends a refused one with a secret
// typed into its password field (the refusal names the field; the secret is left in no field
// and nowhere in the page), then deletes the first after the confirm.
// Usage: node origins_e2e.mjs BASE_URL API_KEY ORIGIN_BASE_URL SECRET OUT_DIR
// Prints one JSON line; exits non-zero with a message on the first failure.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(new URL("../../../dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [baseUrl, apiKey, originBaseUrl, secret, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: origins_e2e.mjs BASE_URL API_KEY ORIGIN_BASE_URL SECRET OUT_DIR");
  process.exit(2);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.KILN_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
const dialogs = [];
let page;
try {
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on("pageerror", (err) => pageErrors.push(String(err.stack || err).slice(0, 600)));
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    dialog.accept();
  });
  page.setDefaultTimeout(20000);

  await page.goto(`${baseUrl}/ui/`);
  await page.fill("#api-key", apiKey);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#job-rows");
  await page.click('[data-nav="origins"]');
  await page.waitForSelector("#origin-rows");

  await page.click("#origin-create-panel summary");
  await page.selectOption("#origin-kind", "http");
  check(await page.isVisible("#origin-http-base-url"), "the http fields are not shown for kind http");
  check(!(await page.isVisible("#origin-s3-bucket")), "the s3 fields are shown for kind http");
  await page.fill("#origin-name", "browser media");
  await page.fill("#origin-http-base-url", originBaseUrl);
  await page.click("#origin-submit");

  const row = await page.waitForSelector('#origin-rows tr[data-origin-id]:has-text("browser media")');
  const originId = await row.getAttribute("data-origin-id");
  const rowText = await row.innerText();
  for (const shown of ["http", "input", originBaseUrl]) check(rowText.includes(shown), `the row does not show ${shown}: ${rowText}`);

  // A refused origin shows the field the server names, and its secret is gone from the form.
  if (!(await page.isVisible("#origin-name"))) await page.click("#origin-create-panel summary");
  await page.selectOption("#origin-kind", "s3");
  check((await page.getAttribute("#origin-s3-secret", "type")) === "password", "the secret access key is not a password field");
  await page.fill("#origin-name", "bad");
  await page.fill("#origin-s3-bucket", "b");
  await page.fill("#origin-s3-access-key-id", "AKIDTEST");
  await page.fill("#origin-s3-secret", secret);
  await page.click("#origin-submit");
  await page.waitForSelector("#origin-error:not([hidden])");
  const refusal = await page.innerText("#origin-error");
  check(refusal.includes("origin.s3.bucket"), `the refusal does not name the field: ${refusal}`);
  check((await page.inputValue("#origin-s3-secret")) === "", "the secret stayed in its field");
  const pageText = await page.evaluate(() => document.documentElement.outerHTML);
  check(!pageText.includes(secret), "the secret is somewhere in the page");
  await page.screenshot({ path: path.join(outDir, "origins.png"), fullPage: true });

  await row.$eval("button.origin-delete", (button) => button.click());
  await page.waitForSelector(`#origin-rows tr[data-origin-id="${originId}"]`, { state: "detached" });
  check(dialogs.length === 1 && dialogs[0].includes(originId), `no confirm before the delete: ${dialogs}`);
  check(!pageErrors.length, `page errors: ${pageErrors.join("\n")}`);
  console.log(JSON.stringify({ ok: true, originId, row: rowText, refusal }));
} catch (err) {
  if (page) await page.screenshot({ path: path.join(outDir, "origins-failure.png"), fullPage: true }).catch(() => {});
  console.error(String(err.stack || err));
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
