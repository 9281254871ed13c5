// The storefront: sign-up and sign-in, the catalog by category, a product,
// ordering and paying, the order's life (receipt, refund requests), the
// order history, the inbox and the rebates with withdrawals.

import { Api } from "./api.js";
import { Auth } from "./auth.js";
import { loadConfig } from "./config.js";
import { locale, status, t } from "./i18n.js";
import { errorBox, field, startApp } from "./shell.js";
import { busy, h, idempotencyKey, loading, money, parseYuan, show, when } from "./ui.js";

const POLL_MS = 2000;
const config = await loadConfig().catch((err) => {
  document.body.replaceChildren(h("main", {}, errorBox(new Error(`${err.message}: the app was served without its configuration (scripts/local up writes it).`))));
  throw err;
});
const auth = new Auth(config, config.userPoolClientId);
const api = new Api(config, auth);
let pendingEmail = "";
let app;

// ------------------------------------------------------------ sign-in

function requireSignIn(main) {
  if (auth.signedIn) return false;
  // A first visitor sees what the shop is before being asked to sign in.
  show(main, h("h1", {}, t("welcomeTitle")), h("p", {}, t("welcomeText")),
    h("p", {}, h("a", { href: "#/signin" }, t("signIn")), " · ", h("a", { href: "#/signup" }, t("signUp"))));
  return true;
}

async function signInView(main) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, value: pendingEmail });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const message = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, t("signIn"));
  const form = h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    show(message);
    await busy(submit, async () => {
      try {
        await auth.signIn(email.value.trim(), password.value);
        location.hash = "#/";
        app.render();
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, h("h1", {}, t("signIn")), field(t("email"), email), field(t("password"), password), submit, message,
  h("p", {}, h("a", { href: "#/signup" }, t("noAccount"))));
  show(main, form);
}

async function signUpView(main) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const message = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, t("signUp"));
  show(main, h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    show(message);
    await busy(submit, async () => {
      try {
        const result = await auth.signUp(email.value.trim(), password.value);
        pendingEmail = email.value.trim();
        if (result.userConfirmed) location.hash = "#/signin";
        else location.hash = "#/confirm";
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, h("h1", {}, t("signUp")), field(t("email"), email), field(t("password"), password),
  h("p", { class: "hint" }, t("passwordHint")), submit, message,
  h("p", {}, h("a", { href: "#/signin" }, t("haveAccount")))));
}

async function confirmView(main) {
  const email = h("input", { type: "email", name: "email", required: true, value: pendingEmail });
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true });
  const message = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, t("confirm"));
  const resend = h("button", { type: "button", class: "link", onclick: () => busy(resend, async () => {
    try { await auth.resendCode(email.value.trim()); } catch (err) { show(message, errorBox(err)); }
  }) }, t("resend"));
  show(main, h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    await busy(submit, async () => {
      try {
        await auth.confirm(email.value.trim(), code.value.trim());
        pendingEmail = email.value.trim();
        location.hash = "#/signin";
        // The sign-in page says why the user is there.
        queueMicrotask(() => document.querySelector("main form")?.prepend(h("p", { class: "ok" }, t("confirmed"))));
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, h("h1", {}, t("confirm")), h("p", {}, t("codeSent", { email: pendingEmail || "…" })),
  field(t("email"), email), field(t("code"), code), submit, resend, message));
}

// ------------------------------------------------------------ catalog

function availability(product) {
  const key = { IN_STOCK: "inStock", SOLD_OUT: "soldOut", LOW_STOCK: "lowStock" }[product.availability];
  return key ? t(key) : product.availability;
}

/** The categories seen so far, for the chips above the catalog. */
const categories = new Set();

async function catalogView(main, category) {
  if (requireSignIn(main)) return;
  const grid = h("div", { class: "grid" });
  const chips = h("div", { class: "chips" });
  const more = h("div", {});
  show(main, h("h1", {}, category ?? t("catalog")), chips, grid, more);

  function drawChips() {
    show(chips,
      h("a", { class: category ? "chip" : "chip active", href: "#/" }, t("all")),
      ...[...categories].sort().map((name) => h("a", { class: name === category ? "chip active" : "chip", href: `#/category/${encodeURIComponent(name)}` }, name)));
  }

  async function page(nextToken) {
    show(more, loading(t("loading")));
    const result = await api.get("/products", { category, limit: 12, nextToken });
    for (const product of result.items) {
      categories.add(product.category);
      grid.append(h("a", { class: "card product", href: `#/products/${encodeURIComponent(product.productId)}`, dataset: { product: product.productId } },
        h("h2", {}, product.name),
        h("p", { class: "price" }, money(product.price, product.currency)),
        h("p", { class: `availability ${product.availability}` }, availability(product))));
    }
    drawChips();
    show(more, result.nextToken
      ? h("button", { onclick: (event) => busy(event.currentTarget, () => page(result.nextToken).catch((err) => show(more, errorBox(err)))) }, t("loadMore"))
      : null);
  }
  drawChips();
  await page();
}

async function productView(main, productId) {
  if (requireSignIn(main)) return;
  show(main, loading(t("loading")));
  const product = await api.get(`/products/${encodeURIComponent(productId)}`);
  const quantity = h("input", { type: "number", name: "quantity", min: 1, max: 99, value: 1, required: true });
  const message = h("div", {});
  // One key per visit of the page: a double click or a retry after a lost
  // answer creates one order, not two.
  const key = idempotencyKey();
  const submit = h("button", { type: "submit", class: "primary", disabled: product.availability === "SOLD_OUT" }, t("order"));
  show(main, h("a", { href: "#/" }, `← ${t("backToCatalog")}`),
    h("article", { class: "card" },
      h("h1", {}, product.name),
      h("p", {}, product.description),
      h("p", { class: "price" }, money(product.price, product.currency)),
      h("p", { class: `availability ${product.availability}` }, availability(product)),
      h("form", { onsubmit: async (event) => {
        event.preventDefault();
        show(message);
        await busy(submit, async () => {
          try {
            const order = await api.post("/orders", { items: [{ productId, quantity: Number(quantity.value) }] }, key);
            location.hash = `#/orders/${encodeURIComponent(order.orderId)}`;
          } catch (err) {
            show(message, errorBox(err));
          }
        });
      } }, field(t("quantity"), quantity), submit, message)));
}

// ------------------------------------------------------------ orders

function lines(items) {
  return h("table", { class: "lines" },
    h("tbody", {}, items.map((line) => h("tr", {},
      h("td", {}, line.name), h("td", { class: "num" }, `× ${line.quantity}`),
      h("td", { class: "num" }, money(line.lineAmount ?? line.amount))))));
}

/** Polls while the route stays on this page. */
function whileOn(hash, fn) {
  const timer = setInterval(() => {
    if (location.hash !== hash) clearInterval(timer);
    else fn();
  }, POLL_MS);
}

async function orderView(main, orderId) {
  if (requireSignIn(main)) return;
  const here = location.hash;
  show(main, loading(t("loading")));
  let order = await api.get(`/orders/${encodeURIComponent(orderId)}`);
  const statusLine = h("p", { class: "status", id: "order-status", dataset: { status: order.orderStatus } });
  const paying = h("section", {});
  const actions = h("section", {});
  const refunds = h("section", {});
  show(main, h("h1", {}, t("orderTitle", { id: order.orderId })), statusLine, lines(order.items),
    h("p", { class: "total" }, `${t("total")}: ${money(order.orderAmount, order.currency)}`,
      order.refundedAmount ? ` · ${t("refunded")}: ${money(order.refundedAmount, order.currency)}` : ""),
    paying, actions, refunds);

  function drawStatus() {
    statusLine.dataset.status = order.orderStatus;
    show(statusLine, `${t("status")}: `, h("strong", {}, status(order.orderStatus)));
    if (order.shipment) {
      statusLine.append(h("br"), t("shipment", { carrier: order.shipment.carrier, tracking: order.shipment.trackingNumber }));
    }
  }

  async function refresh() {
    const before = order.orderStatus;
    order = await api.get(`/orders/${encodeURIComponent(orderId)}`);
    // The status last, once the rest of the page follows it: a form opened
    // on the new status is not then replaced under the user's hands.
    if (order.orderStatus !== before) { drawPaying(); drawActions(); await drawRefunds(); }
    drawStatus();
  }

  function drawPaying() {
    if (order.orderStatus !== "PENDING_PAYMENT") { show(paying); return; }
    const method = h("select", { name: "paymentMethod" }, ["ALIPAY", "WECHAT_PAY", "CARD"].map((m) => h("option", { value: m }, t(m))));
    const message = h("div", {});
    const key = idempotencyKey();
    const submit = h("button", { type: "submit", class: "primary" }, t("pay"));
    show(paying, h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      show(message);
      await busy(submit, async () => {
        try {
          const payment = await api.post("/payments", { orderId, paymentMethod: method.value }, key);
          show(message,
            h("p", {}, h("a", { href: payment.paymentUrl, target: "_blank", rel: "noopener", class: "button primary", id: "pay-link" }, t("openPayPage"))),
            payment.qrCode ? h("p", { class: "qr" }, t("scanQr", { code: payment.qrCode })) : null,
            h("p", { class: "loading" }, t("waiting")));
        } catch (err) {
          show(message, errorBox(err));
        }
      });
    } }, field(t("payWith"), method), submit, message));
  }

  function drawActions() {
    const message = h("div", {});
    const buttons = [];
    if (order.orderStatus === "PENDING_PAYMENT" || order.orderStatus === "PAID") {
      const cancel = h("button", { onclick: () => busy(cancel, async () => {
        try { await api.post(`/orders/${encodeURIComponent(orderId)}/cancel`, {}); await refresh(); } catch (err) { show(message, errorBox(err)); }
      }) }, t("cancel"));
      buttons.push(cancel);
    }
    if (order.orderStatus === "SHIPPED") {
      const receipt = h("button", { class: "primary", id: "confirm-receipt", onclick: () => busy(receipt, async () => {
        try { await api.post(`/orders/${encodeURIComponent(orderId)}/receipt`, {}); await refresh(); } catch (err) { show(message, errorBox(err)); }
      }) }, t("confirmReceipt"));
      buttons.push(receipt);
    }
    show(actions, buttons.length ? h("div", { class: "actions" }, buttons) : null, message);
  }

  async function drawRefunds() {
    if (!["PAID", "SHIPPED", "COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"].includes(order.orderStatus)) { show(refunds); return; }
    const list = await api.get(`/orders/${encodeURIComponent(orderId)}/refund-requests`);
    const rows = list.items.map((r) => h("li", {}, `${when(r.createdAt, locale())} · ${money(r.amount, r.currency)} · `, h("strong", {}, status(r.requestStatus)), r.decisionReason ? ` · ${r.decisionReason}` : ""));
    const form = order.orderStatus === "REFUNDED" ? null : refundForm();
    show(refunds, h("h2", {}, t("refundRequests")), rows.length ? h("ul", {}, rows) : null, form);
  }

  function refundForm() {
    const quantities = order.items.map((line) => h("input", { type: "number", min: 0, max: line.quantity, value: 0, dataset: { product: line.productId } }));
    const reason = h("input", { name: "reason", maxlength: 500, required: true });
    const returnGoods = h("input", { type: "checkbox", name: "returnGoods" });
    const message = h("div", {});
    const key = idempotencyKey();
    const submit = h("button", { type: "submit" }, t("send"));
    return h("details", {}, h("summary", {}, t("refundRequest")), h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      show(message);
      const items = order.items.map((line, i) => ({ productId: line.productId, quantity: Number(quantities[i].value) })).filter((l) => l.quantity > 0);
      await busy(submit, async () => {
        try {
          await api.post(`/orders/${encodeURIComponent(orderId)}/refund-requests`, { items, reason: reason.value, returnGoods: returnGoods.checked }, key);
          await drawRefunds();
        } catch (err) {
          show(message, errorBox(err));
        }
      });
    } }, order.items.map((line, i) => field(`${line.name} (≤ ${line.quantity})`, quantities[i])),
    field(t("reason"), reason), h("label", { class: "check" }, returnGoods, t("returnGoods")), submit, message));
  }

  drawStatus();
  drawPaying();
  drawActions();
  await drawRefunds();
  // Only a payment is waited for on this page; later changes (shipping,
  // a refund) take days, and a reload shows them.
  whileOn(here, () => order.orderStatus === "PENDING_PAYMENT" && refresh().catch(() => {}));
}

async function ordersView(main) {
  if (requireSignIn(main)) return;
  show(main, h("h1", {}, t("orders")), loading(t("loading")));
  const result = await api.get("/orders", { limit: 50 });
  show(main, h("h1", {}, t("orders")), result.items.length
    ? h("ul", { class: "list" }, result.items.map((order) => h("li", {},
      h("a", { href: `#/orders/${encodeURIComponent(order.orderId)}` }, order.items.map((l) => l.name).join(", ")),
      h("span", {}, ` · ${money(order.orderAmount, order.currency)} · ${status(order.orderStatus)} · ${when(order.createdAt, locale())}`))))
    : h("p", {}, t("noOrders")));
}

async function inboxView(main) {
  if (requireSignIn(main)) return;
  show(main, h("h1", {}, t("inbox")), loading(t("loading")));
  const result = await api.get("/me/notifications", { limit: 50 });
  show(main, h("h1", {}, t("inbox")), result.items.length
    ? h("ul", { class: "list inbox" }, result.items.map((n) => h("li", {}, h("strong", {}, n.title), h("p", {}, n.body))))
    : h("p", {}, t("noMessages")));
}

// ------------------------------------------------------------ rebates

async function rebatesView(main) {
  if (requireSignIn(main)) return;
  show(main, h("h1", {}, t("rebates")), loading(t("loading")));
  const [rebates, withdrawals] = await Promise.all([api.get("/me/rebates", { limit: 50 }), api.get("/me/rebates/withdrawals", { limit: 20 })]);
  const balance = rebates.balance;
  const amount = h("input", { name: "amount", inputmode: "decimal", required: true });
  const channel = h("select", { name: "channel" }, ["ALIPAY", "WECHAT_PAY"].map((c) => h("option", { value: c }, t(c))));
  const account = h("input", { name: "account", required: true });
  const accountName = h("input", { name: "accountName" });
  const message = h("div", {});
  let key = idempotencyKey();
  const submit = h("button", { type: "submit", class: "primary" }, t("withdraw"));
  show(main, h("h1", {}, t("rebates")),
    h("section", { class: "card balance", id: "balance" },
      h("h2", {}, t("balance")),
      h("p", {}, `${t("pending")}: `, h("strong", { dataset: { pending: balance.pending } }, money(balance.pending, balance.currency))),
      h("p", {}, `${t("available")}: `, h("strong", { dataset: { available: balance.available } }, money(balance.available, balance.currency)))),
    h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      show(message);
      const fen = parseYuan(amount.value);
      if (fen === null) { show(message, h("p", { class: "error" }, t("badAmount"))); return; }
      const body = { amount: fen, channel: channel.value, account: account.value.trim() };
      if (accountName.value.trim()) body.accountName = accountName.value.trim();
      await busy(submit, async () => {
        try {
          await api.post("/me/rebates/withdrawals", body, key);
          key = idempotencyKey();
          await rebatesView(main);
        } catch (err) {
          show(message, errorBox(err));
        }
      });
    } }, h("h2", {}, t("withdraw")), field(t("amountYuan"), amount), field(t("channel"), channel),
    field(t("account"), account), field(t("accountName"), accountName), submit, message),
    h("h2", {}, t("withdrawals")),
    withdrawals.items.length ? h("ul", { class: "list" }, withdrawals.items.map((w) => h("li", {},
      `${when(w.createdAt, locale())} · ${money(w.amount, w.currency)} · ${t(w.channel)} · `, h("strong", {}, status(w.withdrawalStatus)),
      w.failureReason ? ` · ${w.failureReason}` : ""))) : h("p", {}, t("nothing")),
    h("h2", {}, t("entries")),
    rebates.entries.length ? h("ul", { class: "list" }, rebates.entries.map((e) => h("li", {},
      `${status(e.kind)} · ${money(e.amount, balance.currency)} · ${status(e.status)}`,
      e.orderId ? h("span", {}, " · ", h("a", { href: `#/orders/${encodeURIComponent(e.orderId)}` }, e.orderId)) : ""))) : h("p", {}, t("nothing")));
}

// ------------------------------------------------------------ the app

app = startApp({
  title: () => t("shop"),
  nav: () => auth.signedIn
    ? [h("a", { href: "#/" }, t("catalog")), h("a", { href: "#/orders" }, t("orders")), h("a", { href: "#/inbox" }, t("inbox")),
      h("a", { href: "#/rebates" }, t("rebates")),
      h("button", { class: "link", onclick: () => { auth.signOut(); location.hash = "#/signin"; app.render(); } }, t("signOut"))]
    : [h("a", { href: "#/signin" }, t("signIn")), h("a", { href: "#/signup" }, t("signUp"))],
  routes: [
    [/^#\/$/, catalogView],
    [/^#\/category\/(.+)$/, catalogView],
    [/^#\/products\/(.+)$/, productView],
    [/^#\/orders\/(.+)$/, orderView],
    [/^#\/orders$/, ordersView],
    [/^#\/inbox$/, inboxView],
    [/^#\/rebates$/, rebatesView],
    [/^#\/signin$/, signInView],
    [/^#\/signup$/, signUpView],
    [/^#\/confirm$/, confirmView],
  ],
});

