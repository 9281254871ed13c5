// The browser journeys: headless Debian Chromium, driven by Playwright,
// through the built web app against the local stack (scripts/test runs it).
// A screenshot per step goes to $SCREENSHOTS.
//
//   the admin: sign in to the console, create a product, set the rebate rules
//   the shopper: sign up (the code from the emulator's mail), sign in, browse
//     a category, order, pay on the provider's pay page, see PAID, the inbox
//     and the pending rebate
//   the admin: ship it from the queue of orders to ship
//   the shopper: see it shipped, confirm receipt, ask for one unit's refund
//   the admin: approve the refund; the shopper sees the order partly refunded
//   the admin: change the stock, see the sale in the chart and the top products
//
// Environment: WEB_URL, AWS_ENDPOINT (the emulator, whose SES outbox holds
// the sign-up mail), ADMIN_EMAIL, ADMIN_PASSWORD, SCREENSHOTS, CHROMIUM.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const WEB_URL = env("WEB_URL").replace(/\/$/, "");
const AWS_ENDPOINT = env("AWS_ENDPOINT");
const ADMIN_EMAIL = env("ADMIN_EMAIL");
const ADMIN_PASSWORD = env("ADMIN_PASSWORD");
const SCREENSHOTS = env("SCREENSHOTS");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const run = Date.now().toString(36);
const productId = `journey-${run}`;
const category = `journey${run}`;
const shopperEmail = `journey-${run}@example.com`;
const shopperPassword = `Journey-${run}-Pass1`;

mkdirSync(SCREENSHOTS, { recursive: true });
let step = 0;
async function snap(page, name) {
  step += 1;
  const file = join(SCREENSHOTS, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  step ${step}: ${name} (${file})`);
}

/** The app shows API errors in .error: a journey step that meets one fails with its text. */
async function noError(page) {
  const errors = await page.locator(".error").allInnerTexts();
  if (errors.length) throw new Error(`the page shows an error: ${errors.join(" | ")}`);
}

/** Re-rendering the route until `check` holds (for what consumers do a moment later). */
async function eventually(page, what, check, seconds = 120) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    // A view shows [role=status] while it loads: check what it shows after.
    await page.waitForFunction(() => !document.querySelector("main [role=status]"), null, { timeout: 30000 });
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await page.waitForTimeout(2000);
    // The same hash again re-renders the view, its data fetched anew.
    await page.evaluate(() => window.dispatchEvent(new HashChangeEvent("hashchange")));
  }
}

async function signUpCode(email) {
  for (let i = 0; i < 30; i++) {
    const answer = await (await fetch(`${AWS_ENDPOINT}/_ministack/ses/messages`)).json();
    const messages = Object.values(answer.messages ?? {}).flat().filter((m) => (m.To ?? []).includes(email));
    const code = messages.map((m) => /\b(\d{6})\b/.exec(`${m.Subject} ${m.BodyText} ${m.BodyHtml ?? ""}`)?.[1]).find(Boolean);
    if (code) return code;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`no confirmation mail reached ${email}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // Without the background-networking flags Chromium keeps calling Google's
  // hosts, which this machine's closed network refuses.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const failures = [];
browser.on("disconnected", () => {});

async function journey(name, viewport, body) {
  console.log(`journey: ${name}`);
  const context = await browser.newContext({ viewport, locale: "en-GB" });
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(`${name}: page error: ${err.message}`));
  try {
    await body(page, context);
  } catch (err) {
    await snap(page, `${name}-failed`).catch(() => {});
    throw err;
  } finally {
    await context.close();
  }
}

async function adminSignIn(page) {
  await page.goto(`${WEB_URL}/admin.html#/`);
  await page.fill("input[name=email]", ADMIN_EMAIL);
  await page.fill("input[name=password]", ADMIN_PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("table.table tbody");
}

async function shopperSignIn(page) {
  await page.goto(`${WEB_URL}/index.html#/signin`);
  await page.fill("input[name=email]", shopperEmail);
  await page.fill("input[name=password]", shopperPassword);
  await page.click("button[type=submit]");
  await page.waitForSelector(".grid .product");
}

let orderId;
try {
  await journey("admin-setup", { width: 1280, height: 900 }, async (page) => {
    await adminSignIn(page);
    await snap(page, "console-products");
    await page.click("details summary");
    await page.fill("input[name=productId]", productId);
    await page.fill("input[name=name]", `Journey tea ${run}`);
    await page.fill("input[name=description]", "Made by the browser journey.");
    await page.fill("input[name=category]", category);
    await page.fill("input[name=price]", "88.00");
    await page.fill("input[name=stock]", "5");
    await page.click("details form button[type=submit]");
    await page.waitForSelector(`tr[data-product="${productId}"]`);
    await noError(page);
    await snap(page, "console-product-created");
    await page.goto(`${WEB_URL}/admin.html#/rules`);
    await page.waitForSelector("textarea[name=rules]");
    const rules = JSON.parse(await page.inputValue("textarea[name=rules]"));
    rules.defaultRateBps = Math.max(rules.defaultRateBps ?? 0, 300);
    for (const key of ["minOrderAmount", "maxPerOrder", "maxPerUserPerMonth"]) delete rules[key];
    await page.fill("textarea[name=rules]", JSON.stringify(rules, null, 2));
    await page.click("button[type=submit]");
    await page.waitForSelector("form .ok");
    await snap(page, "console-rebate-rules");
  });


  await journey("shopper", { width: 390, height: 844 }, async (page, context) => {
    await page.goto(`${WEB_URL}/index.html#/signup`);
    await page.fill("input[name=email]", shopperEmail);
    await page.fill("input[name=password]", shopperPassword);
    await snap(page, "sign-up");
    await page.click("button[type=submit]");
    await page.waitForSelector("input[name=code]");
    await page.fill("input[name=code]", await signUpCode(shopperEmail));
    await snap(page, "confirm-email");
    await page.click("button[type=submit]");
    await page.waitForURL(/#\/signin$/);
    await page.waitForSelector("input[name=password]");
    await page.fill("input[name=password]", shopperPassword);
    await page.click("button[type=submit]");
    await page.waitForSelector(".grid .product");
    await snap(page, "catalog");
    await page.goto(`${WEB_URL}/index.html#/category/${category}`);
    await page.waitForSelector(`a[data-product="${productId}"]`);
    const shown = await page.locator(".grid .product").count();
    if (shown !== 1) throw new Error(`category ${category} shows ${shown} products, not its one`);
    await snap(page, "category");
    await page.click(`a[data-product="${productId}"]`);
    await page.waitForSelector("input[name=quantity]");
    await page.fill("input[name=quantity]", "2");
    await snap(page, "product");
    await page.click("form button[type=submit]");
    await page.waitForSelector('#order-status[data-status="PENDING_PAYMENT"]');
    orderId = decodeURIComponent(new URL(page.url()).hash.replace("#/orders/", ""));

    await page.selectOption("select[name=paymentMethod]", "ALIPAY");
    await page.click("section form button[type=submit]");
    await page.waitForSelector("#pay-link");
    await noError(page);
    await snap(page, "order-awaiting-payment");
    const [payPage] = await Promise.all([context.waitForEvent("page"), page.click("#pay-link")]);
    await payPage.waitForSelector("button#pay");
    await snap(payPage, "alipay-pay-page");
    await payPage.click("button#pay");
    await payPage.waitForSelector("#status");
    await payPage.close();
    await page.waitForSelector('#order-status[data-status="PAID"]', { timeout: 60000 });
    await snap(page, "order-paid");
    await page.goto(`${WEB_URL}/index.html#/inbox`);
    await eventually(page, "the paid order's message in the inbox", async () => (await page.locator(".inbox li").count()) > 0);
    await snap(page, "inbox");
    await page.goto(`${WEB_URL}/index.html#/rebates`);
    await eventually(page, "a pending rebate", async () =>
      Number(await page.locator("[data-pending]").getAttribute("data-pending").catch(() => "0")) > 0);
    await snap(page, "rebates");
    await page.goto(`${WEB_URL}/index.html#/orders`);
    await page.waitForSelector(".list li");
    await snap(page, "order-history");
  });

  await journey("admin-ships", { width: 1280, height: 900 }, async (page) => {
    await adminSignIn(page);
    await page.goto(`${WEB_URL}/admin.html#/ship`);
    const entry = page.locator(`li[data-order="${orderId}"]`);
    await entry.waitFor();
    await entry.locator("input[name=carrier]").fill("顺丰速运");
    await entry.locator("input[name=trackingNumber]").fill(`SF${run}`.toUpperCase());
    await snap(page, "console-to-ship");
    await entry.locator("button[type=submit]").click();
    await entry.locator(".ok").waitFor();
    await noError(page);
  });

  await journey("shopper-after-sales", { width: 390, height: 844 }, async (page) => {
    await shopperSignIn(page);
    await page.goto(`${WEB_URL}/index.html#/orders/${orderId}`);
    await page.waitForSelector('#order-status[data-status="SHIPPED"]');
    await snap(page, "order-shipped");
    await page.click("#confirm-receipt");
    await page.waitForSelector('#order-status[data-status="COMPLETED"]');
    await page.click("details summary");
    await page.fill("details input[type=number]", "1");
    await page.fill("details input[name=reason]", "One box arrived crushed.");
    await page.check("details input[name=returnGoods]");
    await page.click("details button[type=submit]");
    await page.waitForSelector("section li strong");
    await noError(page);
    await snap(page, "refund-requested");
  });

  await journey("admin-refunds", { width: 1280, height: 900 }, async (page) => {
    await adminSignIn(page);
    await page.goto(`${WEB_URL}/admin.html#/refunds`);
    const entry = page.locator(`li[data-order="${orderId}"]`);
    await entry.waitFor();
    await snap(page, "console-refund-requests");
    await entry.locator("button.primary").click();
    await entry.locator(".ok").waitFor();
    await noError(page);
  });

  await journey("shopper-refunded", { width: 390, height: 844 }, async (page) => {
    await shopperSignIn(page);
    await page.goto(`${WEB_URL}/index.html#/orders/${orderId}`);
    await eventually(page, "the order partly refunded", async () =>
      (await page.locator('#order-status[data-status="PARTIALLY_REFUNDED"]').count()) === 1);
    await page.waitForSelector("section h2");
    const total = await page.locator(".total").innerText();
    if (!/¥176\.00 · .*¥88\.00$/.test(total)) throw new Error(`the order shows ${total}, not one of two units refunded`);
    // The language switch: the same page in Chinese.
    await page.click("#language");
    await page.waitForSelector("text=部分退款");
    await page.waitForSelector("text=退款申请");
    await snap(page, "order-partly-refunded-zh");
    await page.click("#language");
  });

  await journey("admin-sales", { width: 1280, height: 900 }, async (page) => {
    await adminSignIn(page);
    const row = page.locator(`tr[data-product="${productId}"]`);
    await row.locator("input[name=newStock]").fill("40");
    // Spread over 4 stock items, as for a flash sale.
    await row.locator("input[name=stockShards]").fill("4");
    await row.locator("button").click();
    await row.locator(".ok").waitFor();
    await snap(page, "console-stock-changed");
    // Shards only grow: the console shows the API's refusal, naming the field.
    await row.locator("input[name=stockShards]").fill("2");
    await row.locator("button").click();
    await row.locator(".error").waitFor();
    if (!(await row.locator(".message").innerText()).includes("stockShards")) {
      throw new Error("shrinking the stock shards was not refused by name");
    }
    await page.reload();
    await page.fill("input[name=email]", ADMIN_EMAIL);
    await page.fill("input[name=password]", ADMIN_PASSWORD);
    await page.click("button[type=submit]");
    await page.waitForSelector(`tr[data-product="${productId}"]`);
    const stock = await page.locator(`tr[data-product="${productId}"] input[name=newStock]`).inputValue();
    if (stock !== "40") throw new Error(`after a reload the stock shows ${stock}, not 40`);
    const shards = await page.locator(`tr[data-product="${productId}"] input[name=stockShards]`).inputValue();
    if (shards !== "4") throw new Error(`after a reload the stock shards show ${shards}, not 4`);
    await page.goto(`${WEB_URL}/admin.html#/stats`);
    await eventually(page, "the sale in the top products", async () =>
      (await page.locator(`#top-products tr[data-product="${productId}"]`).count()) === 1);
    const bars = await page.locator("svg.chart rect").evaluateAll((rects) => rects.map((r) => Number(r.dataset.revenue)));
    if (!bars.some((revenue) => revenue >= 8800)) throw new Error(`no day in the chart has the sale's revenue: ${bars}`);
    await snap(page, "console-sales");
  });
  if (failures.length) throw new Error(failures.join("\n"));
  console.log(`journeys passed: ${step} screenshots in ${SCREENSHOTS}`);
} finally {
  await browser.close();
}

