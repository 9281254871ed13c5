#!/usr/bin/env python3
"""A local WeChat Pay: test tooling that speaks WeChat Pay API v3 so that the real
connector (shared/adapters/src/payments/wechatpay.rs) can be run end to end. An
independent implementation, on Python's `cryptography`, of what WeChat Pay's
documentation and SDKs specify; never part of the production path.

  wechatpay.py keys  STATE_DIR       make the merchant's key, a platform certificate,
                                     a WeChat Pay public key and the APIv3 key (once),
                                     and write credentials.json (the SSM parameter)
  wechatpay.py serve STATE_DIR --port P [--deliver-to http://127.0.0.1:4566]

What it does, as WeChat Pay does:
- Checks every call's `Authorization: WECHATPAY2-SHA256-RSA2048 ...` (mchid,
  merchant serial, a timestamp within 300 s, the signature over
  METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY\\n with the merchant's public key).
- POST /v3/pay/transactions/native -> code_url; GET
  /v3/pay/transactions/out-trade-no/{no}?mchid= ; POST .../{no}/close -> 204;
  POST /v3/refund/domestic/refunds (once per out_refund_no, never more than
  paid; answered PROCESSING, then REFUND.SUCCESS, .ABNORMAL or .CLOSED is
  sent to the refund's notify_url a second later). Answers are signed with the platform certificate's key and name its
  serial in Wechatpay-Serial.
- GET /pay/<out_trade_no>: the page behind the code; POST action=pay|close
  (notify=no loses the notification).
- Notifications: TRANSACTION.SUCCESS with the transaction encrypted under the
  APIv3 key (AEAD_AES_256_GCM), signed with the WeChat Pay public key's key
  (Wechatpay-Serial: PUB_KEY_ID_...), so both kinds of serial are exercised;
  resent on a compressed schedule until a 2xx comes back.
- For tests: GET /_sim/trades/<no>, POST /_sim/notify/<no> {"variant","times"}
  (variant "refund[-forged|-tampered|…]": the first refund's result again),
  POST /_sim/refund-outcome/<no> {"status": "SUCCESS"|"ABNORMAL"|"CLOSED"},
  POST /_sim/outage {"on", "matching"}.
- Merchant transfers (payouts): POST /v3/fund-app/mch-transfer/transfer-bills
  (once per out_bill_no) and GET …/transfer-bills/out-bill-no/<no> (404
  NOT_FOUND for one it never got); for tests GET /_sim/transfers/<no> and
  POST /_sim/lose-answers {"matching", "times"}; an openid containing
  "nobody" is refused (OPENID_INVALID).
"""

import argparse
import base64
import datetime as dt
import json
import secrets
import sys
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from flask import Flask, Response, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BEIJING, Outages, Transfers, load_private, load_public, new_key, now_beijing, pem_private, pem_public,
    render_pay_page, post, resend_until, rsa_sign, rsa_verifies,
)

MCHID = "1900000001"
APPID = "wx0000000000000001"
MERCHANT_SERIAL = "5157F09EFDC096DE"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000000012026112200000000000001"
# WeChat Pay resends at 15s, 15s, 30s, 3m, 10m, 20m, 30m, ... (15 times in
# about 24 h); compressed to seconds here.
RESEND_DELAYS = [1, 2, 4, 8, 15, 30, 60]


def make_keys(state):
    state.mkdir(parents=True, exist_ok=True)
    path = state / "keys.json"
    if not path.exists():
        merchant, platform, public = new_key(), new_key(), new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (simulator)")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(platform.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=5 * 365))
            .sign(platform, hashes.SHA256())
        )
        path.write_text(json.dumps({
            "merchantPrivateKey": pem_private(merchant), "merchantPublicKey": pem_public(merchant),
            "platformPrivateKey": pem_private(platform),
            "platformCertificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "platformSerial": format(cert.serial_number, "X"),
            "publicKeyPrivate": pem_private(public), "publicKey": pem_public(public),
            "apiV3Key": secrets.token_hex(16),
        }))
    keys = json.loads(path.read_text())
    (state / "credentials.json").write_text(json.dumps({
        "mchid": MCHID, "appid": APPID, "merchantSerialNo": MERCHANT_SERIAL,
        "merchantPrivateKey": keys["merchantPrivateKey"], "apiV3Key": keys["apiV3Key"],
        "platformCertificates": [keys["platformCertificate"]],
        "publicKeyId": PUBLIC_KEY_ID, "publicKey": keys["publicKey"],
    }))
    return keys


def rfc3339_beijing(seconds=None):
    return dt.datetime.fromtimestamp(seconds or time.time(), BEIJING).isoformat(timespec="seconds")


def make_app(state, deliver_to):
    keys = make_keys(state)
    merchant_public = load_public(keys["merchantPublicKey"])
    platform_private = load_private(keys["platformPrivateKey"])
    notify_private = load_private(keys["publicKeyPrivate"])
    api_v3_key = keys["apiV3Key"].encode()
    lock = threading.Lock()
    trades = {}
    outages = Outages()
    refund_outcomes = {}
    transfers = Transfers()
    app = Flask("wechatpay-simulator")

    def signed(status, body_text, key=platform_private, serial=None, timestamp=None):
        timestamp = str(timestamp or int(time.time()))
        nonce = secrets.token_hex(16)
        response = Response(body_text, status=status, content_type="application/json")
        response.headers["Wechatpay-Timestamp"] = timestamp
        response.headers["Wechatpay-Nonce"] = nonce
        response.headers["Wechatpay-Signature"] = rsa_sign(key, f"{timestamp}\n{nonce}\n{body_text}\n")
        response.headers["Wechatpay-Serial"] = serial or keys["platformSerial"]
        response.headers["Request-ID"] = secrets.token_hex(12)
        return response

    def answer(status, body=None):
        return signed(status, "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def failure(status, code, message):
        return answer(status, {"code": code, "message": message})

    def authorized():
        """None if the call is signed by the merchant, else the 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != "WECHATPAY2-SHA256-RSA2048":
            return failure(401, "SIGN_ERROR", "Authorization scheme is not WECHATPAY2-SHA256-RSA2048")
        fields = {}
        for part in rest.split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value.strip('"')
        if fields.get("mchid") != MCHID or fields.get("serial_no") != MERCHANT_SERIAL:
            return failure(401, "SIGN_ERROR", "mchid or serial_no unknown")
        if not fields.get("timestamp", "").isdigit() or abs(time.time() - int(fields["timestamp"])) >= 300:
            return failure(401, "SIGN_ERROR", "timestamp outside 5 minutes")
        path = request.full_path if request.query_string else request.path
        message = f"{request.method}\n{path}\n{fields['timestamp']}\n{fields.get('nonce_str', '')}\n{request.get_data(as_text=True)}\n"
        if not rsa_verifies(merchant_public, message, fields.get("signature", "")):
            return failure(401, "SIGN_ERROR", "签名错误 signature mismatch")
        return None

    def expired(trade):
        return trade["time_expire"] and rfc3339_beijing() >= trade["time_expire"]

    @app.before_request
    def check():
        if request.path.startswith("/v3/"):
            if outages.hit(request.get_data(as_text=True)):
                return Response('{"code":"SYSTEM_ERROR","message":"系统错误"}', status=500, content_type="application/json")
            return authorized()
        return None

    @app.post("/v3/pay/transactions/native")
    def native():
        body = request.get_json(force=True, silent=True) or {}
        if body.get("mchid") != MCHID or body.get("appid") != APPID:
            return failure(400, "PARAM_ERROR", "mchid/appid")
        amount = body.get("amount", {})
        if not isinstance(amount.get("total"), int) or amount["total"] <= 0:
            return failure(400, "PARAM_ERROR", "amount.total must be a positive integer of fen")
        no = body.get("out_trade_no", "")
        with lock:
            trade = trades.get(no)
            if trade is None:
                trade = trades[no] = {
                    "out_trade_no": no, "total": amount["total"], "currency": amount.get("currency", "CNY"),
                    "description": body.get("description", ""), "attach": body.get("attach"),
                    "notify_url": body.get("notify_url"), "time_expire": body.get("time_expire"),
                    "trade_state": "NOTPAY", "transaction_id": None, "refunds": {}, "deliveries": [], "notify": None,
                }
            elif trade["total"] != amount["total"]:
                return failure(400, "INVALID_REQUEST", "out_trade_no used with another amount")
        return answer(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={no}"})

    @app.get("/v3/pay/transactions/out-trade-no/<no>")
    def query(no):
        trade = trades.get(no)
        if trade is None:
            return failure(404, "ORDER_NOT_EXIST", "订单不存在")
        body = {"appid": APPID, "mchid": MCHID, "out_trade_no": no, "trade_state": trade["trade_state"],
                "amount": {"total": trade["total"], "currency": trade["currency"]}}
        if trade["transaction_id"]:
            body["transaction_id"] = trade["transaction_id"]
        return answer(200, body)

    @app.post("/v3/pay/transactions/out-trade-no/<no>/close")
    def close(no):
        trade = trades.get(no)
        if trade is None:
            return failure(404, "ORDER_NOT_EXIST", "订单不存在")
        with lock:
            if trade["trade_state"] in ("SUCCESS", "REFUND"):
                return failure(400, "ORDER_PAID", "订单已支付")
            trade["trade_state"] = "CLOSED"
        return answer(204)

    @app.post("/v3/refund/domestic/refunds")
    def refund():
        body = request.get_json(force=True, silent=True) or {}
        trade = trades.get(body.get("out_trade_no", ""))
        if trade is None:
            return failure(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        refund_no, amount = body.get("out_refund_no", ""), body.get("amount", {})
        with lock:
            if trade["trade_state"] not in ("SUCCESS", "REFUND"):
                return failure(400, "INVALID_REQUEST", "订单未支付")
            if amount.get("total") != trade["total"]:
                return failure(400, "PARAM_ERROR", "amount.total is not the order's")
            previous = trade["refunds"].get(refund_no)
            fresh = previous is None
            if fresh:
                refunded = sum(r["amount"] for r in trade["refunds"].values())
                if refunded + amount.get("refund", 0) > trade["total"]:
                    return failure(403, "NOT_ENOUGH", "退款金额超过订单可退金额")
                previous = trade["refunds"][refund_no] = {
                    "refund_id": "50" + secrets.token_hex(14), "amount": amount["refund"], "at": now_beijing(),
                    "status": "PROCESSING", "notify_url": body.get("notify_url") or trade["notify_url"],
                    "deliveries": [], "notify": None}
                trade["trade_state"] = "REFUND"
            elif previous["amount"] != amount.get("refund"):
                return failure(400, "INVALID_REQUEST", "out_refund_no used with another amount")
        if fresh:
            # Refunds complete asynchronously: the bank answers later, and
            # WeChat Pay reports it (REFUND.SUCCESS, or ABNORMAL when the
            # buyer's account cannot take it) to the refund's notify_url.
            def settle_later():
                time.sleep(1)
                with lock:
                    previous["status"] = refund_outcomes.get(trade["out_trade_no"], "SUCCESS")
                body, headers = refund_notification(trade, refund_no)
                resend_until(previous, previous["notify_url"], body, headers, deliver_to, RESEND_DELAYS)
            threading.Thread(target=settle_later, daemon=True).start()
        return answer(200, {"refund_id": previous["refund_id"], "out_refund_no": refund_no,
                            "out_trade_no": trade["out_trade_no"], "status": previous["status"],
                            "amount": {"refund": previous["amount"], "total": trade["total"], "currency": trade["currency"]}})

    # ------------------------------------------------------------- the buyer

    def bill(found):
        body = {"out_bill_no": found["no"], "transfer_bill_no": found["reference"], "create_time": found["at"],
                "state": found["state"], "transfer_amount": found["amount"], "openid": found["payee"],
                "mch_id": MCHID, "appid": APPID, "update_time": found["at"]}
        if found["state"] == "FAIL":
            body["fail_reason"] = "OPENID_INVALID"
        return body

    @app.post("/v3/fund-app/mch-transfer/transfer-bills")
    def transfer_bill():
        """A merchant transfer to a user's WeChat balance, once per
        out_bill_no. A real one may wait for the user to confirm
        (WAIT_USER_CONFIRM); this merchant's scene is exempt, so it pays at
        once."""
        body = request.get_json(force=True, silent=True) or {}
        if body.get("appid") != APPID:
            return failure(400, "PARAM_ERROR", "appid")
        amount, openid = body.get("transfer_amount"), body.get("openid", "")
        if not isinstance(amount, int) or amount < 10:
            return failure(400, "PARAM_ERROR", "transfer_amount must be an integer of at least 10 fen")
        if not openid or not body.get("transfer_scene_id") or not body.get("transfer_scene_report_infos"):
            return failure(400, "PARAM_ERROR", "openid, transfer_scene_id and transfer_scene_report_infos are required")
        if "nobody" in openid:
            return failure(400, "OPENID_INVALID", "openid 与 appid 不匹配")
        found, _, lost = transfers.transfer(body.get("out_bill_no", ""), amount, openid, "1330000" + secrets.token_hex(12))
        if found is None:
            return failure(400, "INVALID_REQUEST", "out_bill_no used with another amount or openid")
        if lost:
            return Response('{"code":"SYSTEM_ERROR","message":"系统繁忙"}', status=504, content_type="application/json")
        found["state"] = found.pop("status")
        return answer(200, bill(found))

    @app.get("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<no>")
    def transfer_bill_query(no):
        found = transfers.get(no)
        if found is None:
            return failure(404, "NOT_FOUND", "记录不存在")
        found["state"] = found.pop("status")
        return answer(200, bill(found))

    @app.get("/_sim/transfers/<no>")
    def transfer_of(no):
        found = transfers.get(no)
        return (jsonify(found), 200) if found else (jsonify({"error": "no such transfer"}), 404)

    @app.post("/_sim/lose-answers")
    def lose_answers():
        ask = request.get_json(force=True, silent=True) or {}
        transfers.lose_answers(ask.get("matching", ""), ask.get("times", 1))
        return jsonify({"ok": True})

    @app.get("/pay/<no>")
    def page(no):
        trade = trades.get(no)
        if trade is None:
            return "订单不存在 / no such trade", 404
        payable = trade["trade_state"] == "NOTPAY" and not expired(trade)
        status = "expired" if trade["trade_state"] == "NOTPAY" and expired(trade) else trade["trade_state"]
        return render_pay_page("微信支付 WeChat Pay", "#07c160", trade["description"], no,
                        f"¥{trade['total'] // 100}.{trade['total'] % 100:02d}", status, payable)

    @app.post("/pay/<no>")
    def pay(no):
        trade = trades.get(no)
        if trade is None:
            return "订单不存在 / no such trade", 404
        action = request.form.get("action", "pay")
        with lock:
            if trade["trade_state"] != "NOTPAY" or expired(trade):
                return f"this trade can no longer be paid ({trade['trade_state']})", 409
            if action == "close":
                trade["trade_state"] = "CLOSED"
            else:
                trade["trade_state"] = "SUCCESS"
                trade["transaction_id"] = "42000" + "".join(secrets.choice("0123456789") for _ in range(23))
                trade["success_time"] = rfc3339_beijing()
                trade["event_id"] = secrets.token_hex(16)
        if action != "close" and request.form.get("notify", "yes") != "no":
            body, headers = notification(trade)
            resend_until(trade, trade["notify_url"], body, headers, deliver_to, RESEND_DELAYS)
        if request.headers.get("accept", "").startswith("application/json"):
            return jsonify({"trade_state": trade["trade_state"], "transaction_id": trade["transaction_id"]})
        return page(no)

    # ------------------------------------------------------- notifications

    def notification(trade, variant="genuine"):
        transaction = {
            "appid": APPID, "mchid": MCHID, "out_trade_no": trade["out_trade_no"],
            "transaction_id": trade["transaction_id"] or "none", "trade_type": "NATIVE", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": trade["attach"] or "",
            "success_time": trade.get("success_time") or rfc3339_beijing(),
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": trade["total"], "payer_total": trade["total"], "currency": trade["currency"], "payer_currency": "CNY"},
        }
        if variant == "wrong-merchant":
            transaction["mchid"] = "1900009999"
        if variant == "wrong-amount":
            transaction["amount"]["total"] += 1
        return signed_notification(trade.get("event_id") or secrets.token_hex(16), "TRANSACTION.SUCCESS",
                                   "支付成功", "transaction", transaction, variant)

    def refund_notification(trade, refund_no, variant="genuine"):
        refund = trade["refunds"][refund_no]
        status = refund["status"]
        resource = {
            "mchid": MCHID if variant != "wrong-merchant" else "1900009999",
            "out_trade_no": trade["out_trade_no"], "transaction_id": trade["transaction_id"],
            "out_refund_no": refund_no, "refund_id": refund["refund_id"], "refund_status": status,
            "success_time": rfc3339_beijing(), "user_received_account": "招商银行信用卡0403",
            "amount": {"total": trade["total"], "refund": refund["amount"],
                       "payer_total": trade["total"], "payer_refund": refund["amount"]},
        }
        summary = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}[status]
        refund.setdefault("event_id", secrets.token_hex(16))
        return signed_notification(refund["event_id"], f"REFUND.{status}", summary, "refund", resource, variant)

    def signed_notification(event_id, event_type, summary, original_type, resource, variant):
        """A notification as WeChat Pay sends it: the resource encrypted with
        the APIv3 key, the body signed with WeChat Pay's public key's key."""
        nonce = secrets.token_hex(6)  # 12 characters, as WeChat Pay's
        key = api_v3_key if variant != "undecryptable" else secrets.token_hex(16).encode()
        ciphertext = AESGCM(key).encrypt(nonce.encode(), json.dumps(resource).encode(), original_type.encode())
        body = json.dumps({
            "id": event_id, "create_time": rfc3339_beijing(),
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": summary,
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(),
                         "associated_data": original_type, "nonce": nonce},
        }, ensure_ascii=False, separators=(",", ":"))
        timestamp = int(time.time()) - (301 if variant == "stale" else 0)
        nonce_header = secrets.token_hex(16)
        signer = new_key() if variant == "forged" else notify_private
        headers = {
            "Content-Type": "application/json", "Wechatpay-Timestamp": str(timestamp),
            "Wechatpay-Nonce": nonce_header,
            "Wechatpay-Signature": rsa_sign(signer, f"{timestamp}\n{nonce_header}\n{body}\n"),
            "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000" if variant == "unknown-serial" else PUBLIC_KEY_ID,
        }
        if variant == "tampered":
            body = body.replace(f'"summary":"{summary}"', f'"summary":"{summary}!"')
        return body.encode(), headers

    # ---------------------------------------------------------------- tests

    @app.get("/_sim/trades/<no>")
    def ledger(no):
        trade = trades.get(no)
        if trade is None:
            return jsonify({"error": "no such trade"}), 404
        with lock:
            view = dict(trade, refunded=sum(r["amount"] for r in trade["refunds"].values()))
        return jsonify(view)

    @app.post("/_sim/notify/<no>")
    def notify(no):
        trade = trades.get(no)
        if trade is None:
            return jsonify({"error": "no such trade"}), 404
        ask = request.get_json(force=True, silent=True) or {}
        variant = ask.get("variant", "genuine")
        if variant.startswith("refund"):
            # "refund" or "refund-<variant>": the trade's first refund's
            # result again (as WeChat Pay resends it).
            if not trade["refunds"] or next(iter(trade["refunds"].values()))["status"] == "PROCESSING":
                return jsonify({"error": "no settled refund"}), 409
            refund_no = next(iter(trade["refunds"]))
            body, headers = refund_notification(trade, refund_no, variant.removeprefix("refund").lstrip("-") or "genuine")
        else:
            body, headers = notification(trade, variant)
        answers = []
        for _ in range(int(ask.get("times", 1))):
            delivery = post(trade["notify_url"], body, headers, deliver_to)
            trade["deliveries"].append(delivery)
            answers.append(delivery)
        return jsonify(answers)

    @app.post("/_sim/refund-outcome/<no>")
    def set_refund_outcome(no):
        """How the trade's next refunds end: SUCCESS, ABNORMAL or CLOSED."""
        refund_outcomes[no] = (request.get_json(force=True, silent=True) or {}).get("status", "SUCCESS")
        return jsonify({"out_trade_no": no, "status": refund_outcomes[no]})

    @app.post("/_sim/outage")
    def set_outage():
        ask = request.get_json(force=True, silent=True) or {}
        return jsonify(outages.set(bool(ask.get("on")), ask.get("matching") or ""))

    @app.get("/_sim/health")
    def health():
        return jsonify({"ok": True, "mchid": MCHID})

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("keys").add_argument("state", type=Path)
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
