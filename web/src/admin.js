// The admin console (admin group only, through its own app client whose
// tokens the admin routes require): products and stock, shipping, refund
// requests and withdrawals to decide, rebate rules, and sales per day.

import { Api } from "./api.js";
import { Auth } from "./auth.js";
import { loadConfig } from "./config.js";
import { locale, status, t } from "./i18n.js";
import { errorBox, field, startApp } from "./shell.js";
import { busy, h, loading, money, parseYuan, show, when } from "./ui.js";

const config = await loadConfig().catch((err) => {
  document.body.replaceChildren(h("main", {}, errorBox(new Error(`${err.message}: the console was served without its configuration (scripts/local up writes it).`))));
  throw err;
});
const auth = new Auth(config, config.adminConsoleClientId);
const api = new Api(config, auth);
let app;

function requireAdmin(main) {
  if (auth.signedIn) return false;
  signInView(main);
  return true;
}

async function signInView(main) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const message = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, t("signIn"));
  show(main, h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    show(message);
    await busy(submit, async () => {
      try {
        await auth.signIn(email.value.trim(), password.value);
        const profile = await auth.profile();
        if (!profile.groups.includes("admin")) {
          auth.signOut();
          show(message, h("p", { class: "error", role: "alert" }, t("notAdmin")));
          return;
        }
        app.render();
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, h("h1", {}, `${t("console")} · ${t("signIn")}`), field(t("email"), email), field(t("password"), password), submit, message));
}

/** Every page of a listing (the console's lists are short). */
async function all(path, query = {}) {
  const items = [];
  let nextToken;
  do {
    const page = await api.get(path, { ...query, limit: 100, nextToken });
    items.push(...page.items);
    nextToken = page.nextToken;
  } while (nextToken);
  return items;
}

// ------------------------------------------------------------ products

async function productsView(main) {
  if (requireAdmin(main)) return;
  show(main, h("h1", {}, t("products")), loading(t("loading")));
  const products = await all("/products");
  const rows = products.map((product) => {
    const stock = h("input", { type: "number", min: 0, value: product.stock ?? 0, name: "newStock", dataset: { product: product.productId } });
    // Stock shards only grow (orders hold units on every shard): the
    // smallest value offered is the current one.
    const shards = stockShardsInput(product.stockShards ?? 1);
    const message = h("span", { class: "message" });
    const save = h("button", { onclick: () => busy(save, async () => {
      show(message);
      try {
        const updated = await api.post(`/products/${encodeURIComponent(product.productId)}/stock`,
          { newStock: Number(stock.value), stockShards: Number(shards.value) });
        stock.value = updated.stock;
        shards.value = updated.stockShards ?? shards.value;
        shards.min = shards.value;
        show(message, h("span", { class: "ok" }, t("saved")));
      } catch (err) {
        show(message, errorBox(err));
      }
    }) }, t("setStock"));
    return h("tr", { dataset: { product: product.productId } },
      h("td", {}, product.name, h("br"), h("small", {}, `${product.productId} · ${product.category}`)),
      h("td", { class: "num" }, money(product.price, product.currency)),
      h("td", { class: "num" }, product.reserved ?? 0),
      h("td", {}, stock),
      h("td", {}, shards),
      h("td", {}, save, message));
  });
  show(main, h("h1", {}, t("products")),
    h("div", { class: "scroll" }, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, t("name")), h("th", {}, t("priceYuan")), h("th", {}, t("reserved")), h("th", {}, t("stock")),
        h("th", {}, t("stockShards")), h("th", {}))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6 }, t("nothing")))))),
    newProductForm(main));
}

function newProductForm(main) {
  const productId = h("input", { name: "productId", pattern: "[A-Za-z0-9_-]{1,64}", required: true });
  const name = h("input", { name: "name", required: true });
  const description = h("input", { name: "description" });
  const category = h("input", { name: "category", required: true });
  const price = h("input", { name: "price", inputmode: "decimal", required: true });
  const stock = h("input", { name: "stock", type: "number", min: 0, value: 0, required: true });
  const shards = stockShardsInput(1);
  const message = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, t("create"));
  return h("details", {}, h("summary", {}, t("newProduct")), h("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const fen = parseYuan(price.value);
    if (fen === null) { show(message, h("p", { class: "error" }, t("badAmount"))); return; }
    await busy(submit, async () => {
      try {
        await api.put(`/products/${encodeURIComponent(productId.value.trim())}`, {
          name: name.value, description: description.value, category: category.value.trim(), price: fen, stock: Number(stock.value),
          stockShards: Number(shards.value),
        });
        await productsView(main);
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, field(t("productId"), productId), field(t("name"), name), field(t("description"), description),
  field(t("category"), category), field(t("priceYuan"), price), field(t("stock"), stock),
  field(t("stockShards"), shards), submit, message));
}

/** How many items a product's stock is spread over (1–64; more for a flash sale's hot product). */
function stockShardsInput(current) {
  return h("input", { name: "stockShards", type: "number", min: current, max: 64, step: 1, value: current, required: true });
}

// ------------------------------------------------------------ orders

/** The queue of paid orders to ship, oldest payment first, each with its shipment form. */
async function shipView(main) {
  if (requireAdmin(main)) return;
  show(main, h("h1", {}, t("toShip")), loading(t("loading")));
  const orders = await all("/admin/orders/to-ship");
  show(main, h("h1", {}, t("toShip")), orders.length ? h("ul", { class: "list" }, orders.map((order) => {
    const carrier = h("input", { name: "carrier", placeholder: t("carrier"), required: true });
    const tracking = h("input", { name: "trackingNumber", placeholder: t("trackingNumber"), required: true });
    const message = h("div", {});
    const submit = h("button", { type: "submit", class: "primary" }, t("ship"));
    return h("li", { dataset: { order: order.orderId } },
      h("p", {}, h("strong", {}, order.orderId), ` · ${when(order.createdAt, locale())} · ${money(order.orderAmount, order.currency)} · ${status(order.orderStatus)}`),
      h("p", {}, order.items.map((line) => `${line.name} × ${line.quantity}`).join(", ")),
      h("form", { class: "actions", onsubmit: async (event) => {
        event.preventDefault();
        show(message);
        await busy(submit, async () => {
          try {
            const shipped = await api.post(`/orders/${encodeURIComponent(order.orderId)}/shipments`, { carrier: carrier.value, trackingNumber: tracking.value });
            show(message, h("p", { class: "ok" }, status(shipped.orderStatus)));
            submit.remove();
          } catch (err) {
            show(message, errorBox(err));
          }
        });
      } }, carrier, tracking, submit), message);
  })) : h("p", {}, t("nothing")));
}

/** A list of things to approve or reject, each with a reason field. */
function decisions(items, { describe, decide }) {
  if (!items.length) return h("p", {}, t("nothing"));
  return h("ul", { class: "list" }, items.map((item) => {
    const reason = h("input", { name: "reason", placeholder: t("reason"), maxlength: 500 });
    const message = h("div", {});
    const button = (decision, label) => {
      const b = h("button", { class: decision === "APPROVE" ? "primary" : "", onclick: () => busy(b, async () => {
        show(message);
        try {
          const body = { decision };
          if (reason.value.trim()) body.reason = reason.value.trim();
          const decided = await decide(item, body);
          show(message, h("p", { class: "ok" }, status(decided.requestStatus ?? decided.withdrawalStatus)));
        } catch (err) {
          show(message, errorBox(err));
        }
      }) }, label);
      return b;
    };
    return h("li", { dataset: { order: item.orderId, withdrawal: item.withdrawalId } }, describe(item),
      h("div", { class: "actions" }, reason, button("APPROVE", t("approve")), button("REJECT", t("reject"))), message);
  }));
}

async function refundsView(main) {
  if (requireAdmin(main)) return;
  show(main, h("h1", {}, t("refundRequests")), loading(t("loading")));
  const items = await all("/admin/refund-requests", { status: "REQUESTED" });
  show(main, h("h1", {}, t("refundRequests")), decisions(items, {
    describe: (r) => h("p", {}, `${when(r.createdAt, locale())} · ${r.orderId} · ${money(r.amount, r.currency)} · `,
      r.items.map((l) => `${l.name} × ${l.quantity}`).join(", "), ` · ${r.reason}${r.returnGoods ? " ↩" : ""}`),
    decide: (r, body) => api.post(`/admin/refund-requests/${encodeURIComponent(r.refundRequestId)}/decision`, body),
  }));
}

async function withdrawalsView(main) {
  if (requireAdmin(main)) return;
  show(main, h("h1", {}, t("withdrawals")), loading(t("loading")));
  const items = await all("/admin/withdrawals", { status: "PENDING_REVIEW" });
  show(main, h("h1", {}, t("withdrawals")), decisions(items, {
    describe: (w) => h("p", {}, `${when(w.createdAt, locale())} · ${money(w.amount, w.currency)} · ${t(w.channel)} ${w.account}`),
    decide: (w, body) => api.post(`/admin/withdrawals/${encodeURIComponent(w.withdrawalId)}/decision`, body),
  }));
}

async function rulesView(main) {
  if (requireAdmin(main)) return;
  show(main, h("h1", {}, t("rules")), loading(t("loading")));
  // A new shop has no rules yet: its first set starts from a default rate
  // of 0, which earns nothing until the operator sets one.
  let rules, first = false;
  try {
    rules = await api.get("/admin/rebate-rules");
  } catch (err) {
    if (err.code !== "REBATE_RULES_NOT_SET") throw err;
    rules = { defaultRateBps: 0 };
    first = true;
  }
  const text = h("textarea", { name: "rules", rows: 16, spellcheck: "false" });
  text.value = JSON.stringify(rules, null, 2);
  const message = h("div", {}, first ? h("p", {}, t("noRulesYet")) : null);
  const submit = h("button", { type: "submit", class: "primary" }, t("save"));
  show(main, h("h1", {}, t("rules")), h("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    show(message);
    let body;
    try { body = JSON.parse(text.value); } catch (err) { show(message, errorBox(err)); return; }
    await busy(submit, async () => {
      try {
        const saved = await api.put("/admin/rebate-rules", body);
        text.value = JSON.stringify(saved, null, 2);
        show(message, h("p", { class: "ok" }, t("saved")));
      } catch (err) {
        show(message, errorBox(err));
      }
    });
  } }, text, submit, message));
}

// ------------------------------------------------------------ sales

function isoDay(date) { return date.toISOString().slice(0, 10); }

/** Revenue per day as bars, drawn as SVG (no chart library needed for bars). */
function chart(days, currency) {
  const width = 640, height = 220, pad = 28;
  const max = Math.max(1, ...days.map((d) => d.revenue));
  const step = (width - pad) / Math.max(1, days.length);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("revenue"));
  days.forEach((day, i) => {
    const barHeight = Math.round(((height - 2 * pad) * day.revenue) / max);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(pad + i * step + step * 0.15));
    bar.setAttribute("y", String(height - pad - barHeight));
    bar.setAttribute("width", String(step * 0.7));
    bar.setAttribute("height", String(barHeight));
    bar.setAttribute("data-date", day.date);
    bar.setAttribute("data-revenue", String(day.revenue));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${day.date}: ${money(day.revenue, currency)}, ${day.orders} ${t("ordersCount")}`;
    bar.append(title);
    svg.append(bar);
    if (days.length <= 16 || i % Math.ceil(days.length / 8) === 0) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(pad + i * step + step / 2));
      label.setAttribute("y", String(height - 8));
      label.setAttribute("text-anchor", "middle");
      label.textContent = day.date.slice(5);
      svg.append(label);
    }
  });
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", "2");
  top.setAttribute("y", "14");
  top.textContent = money(max, currency);
  svg.append(top);
  return svg;
}

async function statsView(main) {
  if (requireAdmin(main)) return;
  const today = new Date();
  const from = h("input", { type: "date", name: "from", value: isoDay(new Date(today.getTime() - 13 * 86400000)) });
  const to = h("input", { type: "date", name: "to", value: isoDay(today) });
  const result = h("section", { id: "stats" });
  const submit = h("button", { type: "submit", class: "primary" }, t("show"));
  async function load() {
    show(result, loading(t("loading")));
    try {
      const stats = await api.get("/admin/stats/sales", { from: from.value, to: to.value });
      show(result,
        h("p", { class: "totals" }, `${t("revenue")}: ${money(stats.revenue, stats.currency)} · ${t("ordersCount")}: ${stats.orders} · ${t("units")}: ${stats.units}`),
        chart(stats.days, stats.currency),
        h("h2", {}, t("topProducts")),
        stats.topProducts.length ? h("table", { class: "table", id: "top-products" },
          h("thead", {}, h("tr", {}, h("th", {}, t("name")), h("th", {}, t("units")), h("th", {}, t("revenue")))),
          h("tbody", {}, stats.topProducts.map((p) => h("tr", { dataset: { product: p.productId } },
            h("td", {}, p.name), h("td", { class: "num" }, p.units), h("td", { class: "num" }, money(p.revenue, stats.currency))))))
          : h("p", {}, t("nothing")));
    } catch (err) {
      show(result, errorBox(err));
    }
  }
  show(main, h("h1", {}, t("sales")), h("form", { class: "inline", onsubmit: (event) => { event.preventDefault(); busy(submit, load); } },
    field(t("from"), from), field(t("to"), to), submit), result);
  await load();
}

app = startApp({
  title: () => t("console"),
  nav: () => auth.signedIn
    ? [h("a", { href: "#/" }, t("products")), h("a", { href: "#/ship" }, t("toShip")), h("a", { href: "#/refunds" }, t("refundRequests")),
      h("a", { href: "#/withdrawals" }, t("withdrawals")), h("a", { href: "#/rules" }, t("rules")), h("a", { href: "#/stats" }, t("sales")),
      h("button", { class: "link", onclick: () => { auth.signOut(); location.hash = "#/"; app.render(); } }, t("signOut"))]
    : [],
  routes: [
    [/^#\/$/, productsView],
    [/^#\/ship$/, shipView],
    [/^#\/refunds$/, refundsView],
    [/^#\/withdrawals$/, withdrawalsView],
    [/^#\/rules$/, rulesView],
    [/^#\/stats$/, statsView],
  ],
});
