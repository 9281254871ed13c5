#!/usr/bin/env python3
"""A local Alipay: test tooling that speaks Alipay's OpenAPI protocol (public-key
mode, RSA2) so that the real connector (shared/adapters/src/payments/alipay.rs)
can be run end to end. It is an independent implementation, on Python's
`cryptography`, of what Alipay's documentation and SDKs specify; it is never
part of the production path.

  alipay.py keys  STATE_DIR          make the app's and "Alipay's" key pairs (once)
                                     and write credentials.json (what the SSM
                                     parameter holds)
  alipay.py serve STATE_DIR --port P [--deliver-to http://127.0.0.1:4566]

What it does, as Alipay does:
- POST /gateway.do: verifies the request's RSA2 signature with the app's public
  key (sorted non-empty parameters but `sign`); answers alipay.trade.precreate,
  .query, .refund (once per out_request_no, never more than was paid) and
  .close, each answer signed with Alipay's key over the response object's text.
- GET /gateway.do?...: the signed alipay.trade.page.pay URL; opens the pay page.
- GET /pay/<out_trade_no>: the page a buyer (or a browser test) pays on;
  POST it with action=pay|close (and notify=no to lose the notification).
- Notifications: a form POST to the trade's notify_url, signed with Alipay's
  key over the non-empty fields but sign and sign_type, resent on a compressed
  schedule until the answer's body is exactly `success` (Alipay: 8 times over
  about 25 hours, the same notify_id each time).
- alipay.fund.trans.uni.transfer (TRANS_ACCOUNT_NO_PWD into an Alipay account,
  once per out_biz_no; a logon id needs the payee's name) and
  alipay.fund.trans.common.query (ORDER_NOT_EXIST for one it never got).
- For tests: GET /_sim/trades/<out_trade_no> (the ledger: trade, refunds,
  deliveries), GET /_sim/transfers/<out_biz_no> (a payout and how many
  requests it took), POST /_sim/lose-answers {"matching", "times"} (the next
  transfers to a payee containing the text are made and their answers lost),
  a payee containing "nobody" does not exist and POST /_sim/notify/<out_trade_no> {"variant", "times"} to send
  duplicates, forgeries and wrong-merchant or wrong-amount notifications.

--deliver-to: the API's notify_url names the execute-api host the request came
in on (https://<api>.execute-api.localhost/...); locally that host is the
emulator, so deliveries go to this address over HTTP with that Host header.
"""

import argparse
import json
import secrets
import sys
import threading
import urllib.parse
from datetime import datetime
from pathlib import Path

from flask import Flask, Response, jsonify, redirect, request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BEIJING, Outages, Transfers, load_private, load_public, new_key, now_beijing, pem_private, pem_public,
    render_pay_page, post, resend_until, rsa_sign, rsa_verifies,
)

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
# Alipay resends at 4m, 10m, 10m, 1h, 2h, 6h, 15h; compressed to seconds here.
RESEND_DELAYS = [1, 2, 4, 8, 15, 30, 60]


# ------------------------------------------------------------------ keys


def make_keys(state):
    state.mkdir(parents=True, exist_ok=True)
    path = state / "keys.json"
    if not path.exists():
        app, alipay = new_key(), new_key()
        path.write_text(json.dumps({
            "appPrivateKey": pem_private(app), "appPublicKey": pem_public(app),
            "alipayPrivateKey": pem_private(alipay), "alipayPublicKey": pem_public(alipay),
        }))
    keys = json.loads(path.read_text())
    credentials = {
        "appId": APP_ID, "sellerId": SELLER_ID,
        "appPrivateKey": keys["appPrivateKey"],
        # As Alipay's console shows it: bare base64 DER, no PEM lines.
        "alipayPublicKey": "".join(l for l in keys["alipayPublicKey"].splitlines() if not l.startswith("-----")),
    }
    (state / "credentials.json").write_text(json.dumps(credentials))
    return keys


# --------------------------------------------------------------- signing


def content(params, excluded):
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in excluded and params[k] != "")


def sign(private_key, text):
    return rsa_sign(private_key, text)


def verifies(public_key, text, signature):
    return rsa_verifies(public_key, text, signature)


def yuan(fen):
    return f"{fen // 100}.{fen % 100:02d}"


def fen(text):
    units, cents = text.split(".")
    assert len(cents) == 2 and units.isdigit() and cents.isdigit(), text
    return int(units) * 100 + int(cents)


# ----------------------------------------------------------------- state


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.trades = {}

    def trade(self, out_trade_no):
        return self.trades.get(out_trade_no)


def make_app(state, deliver_to):
    keys = make_keys(state)
    app_public = load_public(keys["appPublicKey"])
    alipay_private = load_private(keys["alipayPrivateKey"])
    ledger = Ledger()
    transfers = Transfers()
    app = Flask("alipay-simulator")
    # POST /_sim/outage {"on": true, "matching": TEXT}: the gateway answers
    # 503, as during an Alipay incident, to calls whose biz_content contains
    # TEXT (an order id, a payee: tests running at once are not disturbed),
    # until turned off with the same TEXT.
    outages = Outages()

    def answer(method, body):
        name = method.replace(".", "_") + "_response"
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        envelope = '{"%s":%s,"sign":"%s"}' % (name, text, sign(alipay_private, text))
        return Response(envelope, content_type="application/json;charset=utf-8")

    def business_error(method, sub_code, sub_msg):
        return answer(method, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})

    def checked_params(params):
        """The request's parameters if its signature holds, else the error answer."""
        method = params.get("method", "")
        if params.get("sign_type") != "RSA2" or not verifies(app_public, content(params, {"sign"}), params.get("sign", "")):
            return None, answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"})
        if params.get("app_id") != APP_ID:
            return None, answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id", "sub_msg": "无效的AppID参数"})
        try:
            biz = json.loads(params.get("biz_content", "{}"))
        except ValueError:
            return None, answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter", "sub_msg": "biz_content"})
        return biz, None

    def open_trade(biz, notify_url):
        """A trade as precreate or page.pay opens it; the same out_trade_no
        again with another amount is refused, as Alipay does."""
        out_trade_no = biz["out_trade_no"]
        amount = fen(biz["total_amount"])
        with ledger.lock:
            trade = ledger.trade(out_trade_no)
            if trade is None:
                trade = {
                    "out_trade_no": out_trade_no, "total_amount": amount, "subject": biz.get("subject", ""),
                    "trade_status": "WAIT_BUYER_PAY", "trade_no": None, "notify_url": notify_url,
                    "time_expire": biz.get("time_expire"), "created": now_beijing(), "notify_id": None,
                    "refunds": {}, "deliveries": [], "notify": None,
                }
                ledger.trades[out_trade_no] = trade
            elif trade["total_amount"] != amount:
                return None
            if notify_url:
                trade["notify_url"] = notify_url
            return trade

    def expired(trade):
        return trade["time_expire"] and now_beijing() >= trade["time_expire"]

    # -------------------------------------------------------- the gateway

    @app.post("/gateway.do")
    def gateway():
        if outages.hit(request.form.get("biz_content", "")):
            return Response("<html>503 Service Temporarily Unavailable</html>", status=503, content_type="text/html")
        params = request.form.to_dict()
        method = params.get("method", "")
        biz, error = checked_params(params)
        if error:
            return error
        if method == "alipay.trade.precreate":
            trade = open_trade(biz, params.get("notify_url"))
            if trade is None:
                return business_error(method, "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return answer(method, {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"],
                                   "qr_code": f"{request.host_url}qr/{trade['out_trade_no']}"})
        if method == "alipay.fund.trans.uni.transfer":
            return transfer(method, biz)
        if method == "alipay.fund.trans.common.query":
            found = transfers.get(biz.get("out_biz_no", ""))
            if found is None:
                return business_error(method, "ORDER_NOT_EXIST", "转账订单不存在")
            return answer(method, transfer_body(found))
        trade = ledger.trade(biz.get("out_trade_no", ""))
        if trade is None:
            return business_error(method, "ACQ.TRADE_NOT_EXIST", "交易不存在")
        if method == "alipay.trade.query":
            body = {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"],
                    "trade_status": trade["trade_status"], "total_amount": yuan(trade["total_amount"])}
            if trade["trade_no"]:
                body["trade_no"] = trade["trade_no"]
            return answer(method, body)
        if method == "alipay.trade.close":
            with ledger.lock:
                if trade["trade_status"] != "WAIT_BUYER_PAY":
                    return business_error(method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
                trade["trade_status"] = "TRADE_CLOSED"
            return answer(method, {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"]})
        if method == "alipay.trade.refund":
            request_no = biz.get("out_request_no") or trade["out_trade_no"]
            amount = fen(biz["refund_amount"])
            with ledger.lock:
                if trade["trade_status"] not in ("TRADE_SUCCESS",):
                    return business_error(method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
                previous = trade["refunds"].get(request_no)
                if previous is not None:
                    if previous["amount"] != amount:
                        return business_error(method, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致")
                    fund_change = "N"
                else:
                    refunded = sum(r["amount"] for r in trade["refunds"].values())
                    if refunded + amount > trade["total_amount"]:
                        return business_error(method, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
                    trade["refunds"][request_no] = {"amount": amount, "at": now_beijing(), "reason": biz.get("refund_reason", "")}
                    fund_change = "Y"
                refunded = sum(r["amount"] for r in trade["refunds"].values())
            return answer(method, {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                                   "out_trade_no": trade["out_trade_no"], "fund_change": fund_change,
                                   "refund_fee": yuan(refunded)})
        return answer(method, {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method", "sub_msg": method})

    def transfer_body(found):
        body = {"code": "10000", "msg": "Success", "out_biz_no": found["no"], "order_id": found["reference"],
                "pay_fund_order_id": found["reference"], "status": found["status"], "trans_date": found["at"],
                "trans_amount": yuan(found["amount"])}
        if found["status"] == "FAIL":
            body.update(error_code="PAYEE_NOT_EXIST", fail_reason="收款账号不存在")
        return body

    def transfer(method, biz):
        """alipay.fund.trans.uni.transfer into an Alipay account: once per
        out_biz_no; a logon id needs the payee's name."""
        if biz.get("product_code") != "TRANS_ACCOUNT_NO_PWD" or biz.get("biz_scene") != "DIRECT_TRANSFER":
            return business_error(method, "INVALID_PARAMETER", "product_code/biz_scene")
        payee = biz.get("payee_info") or {}
        identity, kind = payee.get("identity", ""), payee.get("identity_type", "")
        if kind not in ("ALIPAY_USER_ID", "ALIPAY_LOGON_ID") or not identity:
            return business_error(method, "INVALID_PARAMETER", "payee_info")
        if kind == "ALIPAY_LOGON_ID" and not payee.get("name"):
            return business_error(method, "PAYEE_USERINFO_ERROR", "收款方姓名不能为空")
        try:
            amount = fen(biz.get("trans_amount", ""))
        except (AssertionError, ValueError):
            return business_error(method, "INVALID_PARAMETER", "trans_amount")
        if amount < 10:
            return business_error(method, "EXCEED_LIMIT_SM_MIN_AMOUNT", "单笔最低转账金额0.1元")
        if "nobody" in identity:
            return business_error(method, "PAYEE_NOT_EXIST", "收款账号不存在")
        reference = "2026" + secrets.token_hex(12)
        found, _, lost = transfers.transfer(biz.get("out_biz_no", ""), amount, identity, reference)
        if found is None:
            return business_error(method, "PARAM_ILLEGAL", "out_biz_no used with another amount or payee")
        if lost:
            return Response("<html>504 Gateway Time-out</html>", status=504, content_type="text/html")
        return answer(method, transfer_body(found))

    @app.get("/gateway.do")
    def page_pay():
        params = request.args.to_dict()
        biz, error = checked_params(params)
        if error:
            return error.get_data(as_text=True), 400
        if params.get("method") not in ("alipay.trade.page.pay", "alipay.trade.wap.pay"):
            return "only page.pay and wap.pay open a page", 400
        trade = open_trade(biz, params.get("notify_url"))
        if trade is None:
            return "交易信息被篡改 (ACQ.CONTEXT_INCONSISTENT)", 400
        return redirect(f"/pay/{trade['out_trade_no']}")

    # ---------------------------------------------------------- the buyer

    @app.get("/qr/<out_trade_no>")
    def qr(out_trade_no):
        return redirect(f"/pay/{out_trade_no}")

    @app.get("/pay/<out_trade_no>")
    def pay_page(out_trade_no):
        trade = ledger.trade(out_trade_no)
        if trade is None:
            return "交易不存在 / no such trade", 404
        closed = trade["trade_status"] != "WAIT_BUYER_PAY" or expired(trade)
        status = "expired" if expired(trade) and trade["trade_status"] == "WAIT_BUYER_PAY" else trade["trade_status"]
        return render_pay_page("支付宝 Alipay", "#1677ff", trade["subject"], trade["out_trade_no"],
                        f"¥{yuan(trade['total_amount'])}", status, not closed)

    @app.post("/pay/<out_trade_no>")
    def pay(out_trade_no):
        trade = ledger.trade(out_trade_no)
        if trade is None:
            return "交易不存在 / no such trade", 404
        action = request.form.get("action", "pay")
        with ledger.lock:
            if trade["trade_status"] != "WAIT_BUYER_PAY" or expired(trade):
                return f"this trade can no longer be paid ({trade['trade_status']})", 409
            if action == "close":
                trade["trade_status"] = "TRADE_CLOSED"
            else:
                trade["trade_status"] = "TRADE_SUCCESS"
                trade["trade_no"] = datetime.now(BEIJING).strftime("%Y%m%d") + "22001" + "".join(secrets.choice("0123456789") for _ in range(15))
                trade["notify_id"] = datetime.now(BEIJING).strftime("%Y%m%d") + secrets.token_hex(12)
                trade["paid_at"] = now_beijing()
        if action != "close" and request.form.get("notify", "yes") != "no":
            deliver_until_acknowledged(trade)
        if request.headers.get("accept", "").startswith("application/json"):
            return jsonify({"trade_status": trade["trade_status"], "trade_no": trade["trade_no"]})
        return redirect(f"/pay/{out_trade_no}")

    # ------------------------------------------------------ notifications

    def notification(trade, variant="genuine"):
        fields = {
            "gmt_create": trade["created"], "charset": "utf-8", "seller_id": SELLER_ID,
            "subject": trade["subject"], "buyer_id": "2088102000000001",
            "invoice_amount": yuan(trade["total_amount"]), "notify_id": trade["notify_id"] or "unpaid",
            "notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS",
            "receipt_amount": yuan(trade["total_amount"]), "buyer_pay_amount": yuan(trade["total_amount"]),
            "app_id": APP_ID, "auth_app_id": APP_ID, "gmt_payment": trade.get("paid_at") or now_beijing(),
            "notify_time": now_beijing(), "version": "1.0", "out_trade_no": trade["out_trade_no"],
            "total_amount": yuan(trade["total_amount"]), "trade_no": trade["trade_no"] or "none",
            "buyer_logon_id": "buy***@example.com", "point_amount": "0.00",
        }
        key = alipay_private
        if variant == "wrong-app":
            fields["app_id"] = fields["auth_app_id"] = "2021000000009999"
        elif variant == "wrong-seller":
            fields["seller_id"] = "2088000000009999"
        elif variant == "wrong-amount":
            fields["total_amount"] = yuan(trade["total_amount"] + 1)
        elif variant == "forged":
            key = new_key()
        elif variant == "closed":
            fields["trade_status"] = "TRADE_CLOSED"
        fields["sign"] = sign(key, content(fields, {"sign", "sign_type"}))
        fields["sign_type"] = "RSA2"
        if variant == "tampered":
            fields["total_amount"] = yuan(trade["total_amount"] - 1 if trade["total_amount"] > 1 else 2)
        if variant == "unsigned":
            del fields["sign"]
        return urllib.parse.urlencode(fields).encode()

    def deliver(trade, body):
        delivery = post(trade["notify_url"], body,
                        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, deliver_to)
        with ledger.lock:
            trade["deliveries"].append(delivery)
        return delivery

    def deliver_until_acknowledged(trade):
        body = notification(trade)
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        resend_until(trade, trade["notify_url"], body, headers, deliver_to, RESEND_DELAYS,
                     acknowledged=lambda d: d["body"] == "success")

    # ---------------------------------------------------------------- tests

    @app.get("/_sim/trades/<out_trade_no>")
    def ledger_of(out_trade_no):
        trade = ledger.trade(out_trade_no)
        if trade is None:
            return jsonify({"error": "no such trade"}), 404
        with ledger.lock:
            view = dict(trade, refunded=sum(r["amount"] for r in trade["refunds"].values()))
        return jsonify(view)

    @app.post("/_sim/notify/<out_trade_no>")
    def notify(out_trade_no):
        trade = ledger.trade(out_trade_no)
        if trade is None:
            return jsonify({"error": "no such trade"}), 404
        ask = request.get_json(force=True, silent=True) or {}
        variant, times = ask.get("variant", "genuine"), int(ask.get("times", 1))
        body = notification(trade, variant)
        return jsonify([deliver(trade, body) for _ in range(times)])

    @app.get("/_sim/transfers/<out_biz_no>")
    def transfer_of(out_biz_no):
        found = transfers.get(out_biz_no)
        return (jsonify(found), 200) if found else (jsonify({"error": "no such transfer"}), 404)

    @app.post("/_sim/lose-answers")
    def lose_answers():
        ask = request.get_json(force=True, silent=True) or {}
        transfers.lose_answers(ask.get("matching", ""), ask.get("times", 1))
        return jsonify({"ok": True})

    @app.post("/_sim/outage")
    def set_outage():
        ask = request.get_json(force=True, silent=True) or {}
        return jsonify(outages.set(bool(ask.get("on")), ask.get("matching") or ""))

    @app.get("/_sim/health")
    def health():
        return jsonify({"ok": True, "appId": APP_ID})

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys")
    keys.add_argument("state", type=Path)
    serve = sub.add_parser("serve")
    serve.add_argument("state", type=Path)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--deliver-to", default="")
    args = parser.parse_args()
    if args.command == "keys":
        make_keys(args.state)
        print(args.state / "credentials.json")
        return
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_app(args.state, args.deliver_to).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    sys.exit(main())
