// The web app's pure helpers, with Node's own test runner (no DOM needed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { money, parseYuan } from "../src/ui.js";

test("amounts typed in yuan become fen by their digits", () => {
  assert.equal(parseYuan("12"), 1200);
  assert.equal(parseYuan("12.3"), 1230);
  assert.equal(parseYuan(" 12.34 "), 1234);
  assert.equal(parseYuan("0.01"), 1);
  // A float would give 1.1 * 100 = 110.00000000000001.
  assert.equal(parseYuan("1.10"), 110);
  assert.equal(parseYuan("90071992547409.91"), 9007199254740991);
  assert.equal(parseYuan("90071992547409.92"), null);
  for (const bad of ["", "1.234", "-1", "1e3", "1,5", "abc", ".5", "1.", "١٢"]) {
    assert.equal(parseYuan(bad), null, bad);
  }
});

test("minor units are shown with their currency, never through a float", () => {
  assert.equal(money(16800), "¥168.00");
  assert.equal(money(1990, "CNY"), "¥19.90");
  assert.equal(money(5, "USD"), "$0.05");
  assert.equal(money(-264), "-¥2.64");
  assert.equal(money(9007199254740991), "¥90071992547409.91");
  assert.equal(money(100, "GBP"), "GBP 1.00");
});
