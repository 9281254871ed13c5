// Small DOM helpers: the pages are plain elements built by code, so no
// framework is needed and nothing is injected as HTML (text goes in as text).

/** Builds an element: h("button", {class: "primary", onclick}, "Pay"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) if (data !== undefined && data !== null) el.dataset[name] = data;
    }
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces what `el` shows. */
export function show(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const SYMBOLS = { CNY: "¥", USD: "$", EUR: "€", HKD: "HK$" };

/**
 * Minor units as the shop shows them: 16800 CNY → "¥168.00". Integer
 * arithmetic only: amounts are exact integers below 2^53.
 */
export function money(minor, currency = "CNY") {
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  const units = Math.trunc(abs / 100);
  const cents = String(abs % 100).padStart(2, "0");
  return `${sign}${SYMBOLS[currency] ?? currency + " "}${units}.${cents}`;
}

/**
 * A typed amount in yuan ("12", "12.3", "12.34") to fen, by its digits,
 * never through a float; null when it is not such an amount.
 */
export function parseYuan(text) {
  const match = /^\s*(\d{1,14})(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  // Amounts are exact below 2^53 (the API's limit too); past it, no answer.
  const fen = Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0"));
  return Number.isSafeInteger(fen) ? fen : null;
}

export function when(iso, locale) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(locale);
}

/** A fresh key per attempt of a write that takes `Idempotency-Key`. */
export function idempotencyKey() {
  return crypto.randomUUID();
}

/**
 * Runs `action` with the button disabled and marked busy, so that a second
 * click cannot send a second request while the first is under way.
 */
export async function busy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function loading(text) {
  return h("p", { class: "loading", role: "status" }, text);
}
