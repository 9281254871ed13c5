// What the storefront and the admin console share: the header with its
// navigation, the language switch, the hash router and how errors show.

import { ApiError } from "./api.js";
import { lang, t, toggleLanguage, locale } from "./i18n.js";
import { h, show } from "./ui.js";

/** The words shown for a failed call: the API's message as it is. */
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 429 && err.retryAfter !== null && !Number.isNaN(err.retryAfter)) {
      return `${t("retryIn", { seconds: err.retryAfter })} ${err.message}`;
    }
    return `${err.message} (${err.code})`;
  }
  // Cognito's errors carry a code and a message too.
  return err?.code ? `${err.message} (${err.code})` : String(err?.message ?? err);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, errorText(err));
}

/**
 * Starts a single-page app: `routes` maps a hash pattern to a view
 * `(main, ...captures) => Promise`, `nav()` gives the header's links.
 */
export function startApp({ title, routes, nav }) {
  document.documentElement.lang = locale();
  const header = h("header", {});
  const main = h("main", { id: "main" });
  document.body.replaceChildren(header, main);

  async function render() {
    const hash = location.hash || "#/";
    document.title = title();
    show(header,
      h("a", { class: "brand", href: "#/" }, title()),
      h("nav", {}, ...nav()),
      h("button", { class: "link", id: "language", onclick: () => { toggleLanguage(); render(); } }, t("language")));
    for (const [pattern, view] of routes) {
      const match = pattern.exec(hash);
      if (match) {
        show(main);
        try {
          await view(main, ...match.slice(1).map(decodeURIComponent));
        } catch (err) {
          main.append(errorBox(err));
        }
        return;
      }
    }
    location.hash = "#/";
  }

  window.addEventListener("hashchange", render);
  render();
  return { render, lang };
}

/** A labelled form field. */
export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}
