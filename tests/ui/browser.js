// Drives Debian's Chromium (headless, through playwright-core) against a running wharf for
// tests/ui_browser.rs: `node browser.js SCENARIO BASE_URL USER PASSWORD SHOTS_DIR`. Prints one
// JSON object with what the page showed; the Rust test makes the assertions.
"use strict";
const { chromium } = require("playwright-core");

const [scenario, base, user, password, shots] = process.argv.slice(2);
const screenshot = async (page, name) => {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
};
const texts = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent.trim()));
const rowNames = (page) => page.$$eval("#repositories tbody tr", (rows) => rows.map((r) => r.dataset.name));

const scenarios = {
  // The list, its pages and filter, a multi-arch repository, its index and one child manifest.
  async browse(page) {
    const out = {};
    const first = await page.goto(`${base}/ui/`);
    out.firstStatus = first.status();
    out.firstServerTiming = first.headers()["server-timing"] || "";
    out.firstPage = await rowNames(page);
    const cells = (n) => page.$$eval(`#repositories tbody tr:nth-child(${n}) td`, (tds) => tds.map((t) => t.textContent.trim()));
    out.firstRow = await cells(1);
    out.bulkRow = await cells(3);
    await screenshot(page, "repositories");
    await page.click("#next");
    await page.waitForLoadState();
    out.secondUrl = page.url();
    out.secondPage = await rowNames(page);
    await page.fill("input[name=q]", "repo-0420");
    await Promise.all([page.waitForNavigation(), page.click("form.filter button")]);
    out.filtered = await rowNames(page);
    await page.goto(`${base}/ui/`);
    await Promise.all([page.waitForNavigation(), page.click("a[href='/ui/repo?name=app%2Fmulti']")]);
    out.multiTags = await texts(page, "#tags tbody tr td:first-child");
    out.multiPlatforms = await texts(page, "#tags tbody tr td:nth-child(3) .tag");
    await screenshot(page, "repository");
    await Promise.all([page.waitForNavigation(), page.click("#tags tbody tr:first-child td:first-child a")]);
    out.indexPlatforms = await texts(page, "#children tbody tr td:first-child");
    await screenshot(page, "index");
    await Promise.all([page.waitForNavigation(), page.click("#children tbody tr:first-child td.digest a")]);
    out.childPlatform = await page.textContent("#platform");
    out.childLayers = await texts(page, "#layers tbody tr td:first-child");
    await page.goto(`${base}/ui/manifest?name=app%2Fweb&ref=latest`);
    out.webLayers = await page.$$eval("#layers tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));
    out.webHistory = await texts(page, "#history tbody tr td:nth-child(2)");
    out.webPlatform = await page.textContent("#platform");
    await screenshot(page, "manifest");
    await page.goto(`${base}/ui/status`);
    out.statusCommands = await texts(page, ".cmd code");
    out.statusGc = await page.textContent("#gc");
    out.repositoryCount = await page.textContent("#repository-count");
    await screenshot(page, "status");
    return out;
  },

  // The copy button puts the shown pull command on the clipboard, read back in the page.
  async copy(page, context) {
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    await page.goto(`${base}/ui/repo?name=app%2Fweb`);
    const shown = await page.textContent("#pull-docker");
    await page.click("button[data-for=pull-docker]");
    await page.waitForFunction(() => document.querySelector("button[data-for=pull-docker]").textContent === "Copied");
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    await page.click("button[data-for=pull-podman]");
    await page.waitForFunction(() => document.querySelector("button[data-for=pull-podman]").textContent === "Copied");
    const copiedPodman = await page.evaluate(() => navigator.clipboard.readText());
    return { shown, copied, copiedPodman };
  },

  // Delete a tag: dismissing the confirmation keeps it, accepting deletes it.
  async delete(page) {
    await page.goto(`${base}/ui/repo?name=app%2Fweb`);
    const before = await texts(page, "#tags tbody tr td:first-child");
    const buttons = await page.$$eval("#tags button.danger", (b) => b.length);
    const repositoryButton = await page.$$eval("#delete-repository button", (b) => b.length);
    let asked = "";
    page.once("dialog", (d) => { asked = d.message(); d.dismiss(); });
    await page.click("tr[data-tag='1.0'] button.danger");
    await page.waitForTimeout(300);
    const afterDismiss = await texts(page, "#tags tbody tr td:first-child");
    page.once("dialog", (d) => d.accept());
    await Promise.all([page.waitForNavigation(), page.click("tr[data-tag='1.0'] button.danger")]);
    const after = await texts(page, "#tags tbody tr td:first-child");
    await screenshot(page, "repository-after-delete");
    return { before, buttons, repositoryButton, asked, afterDismiss, after, url: page.url() };
  },

  // Delete the whole repository: it leaves the list.
  async deleterepo(page) {
    await page.goto(`${base}/ui/repo?name=app%2Fweb`);
    let asked = "";
    page.once("dialog", (d) => { asked = d.message(); d.accept(); });
    await Promise.all([page.waitForNavigation(), page.click("#delete-repository button")]);
    return { asked, url: page.url(), list: await rowNames(page) };
  },

  // Without the delete right: no button, and the server refuses the form posted anyway.
  async nodelete(page) {
    await page.goto(`${base}/ui/repo?name=app%2Fweb`);
    const buttons = await page.$$eval("button.danger, form[action='/ui/delete']", (b) => b.length);
    const tags = await texts(page, "#tags tbody tr td:first-child");
    const refused = await page.evaluate(async () => {
      const r = await fetch("/ui/delete", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "name=app%2Fweb&tag=latest",
      });
      return { status: r.status, text: await r.text() };
    });
    const refusedRepository = await page.evaluate(async () => {
      const r = await fetch("/ui/delete", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "name=app%2Fweb&what=repository",
      });
      return r.status;
    });
    return { buttons, tags, refused, refusedRepository };
  },
};

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.WHARF_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
    headless: true,
  });
  try {
    const context = await browser.newContext({
      httpCredentials: user ? { username: user, password } : undefined,
      viewport: { width: 1200, height: 800 },
    });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const out = await scenarios[scenario](page, context);
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
