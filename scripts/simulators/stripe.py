#!/usr/bin/env python3
"""A local Stripe: test tooling that speaks the part of Stripe's API the card
connector (shared/adapters/src/payments/stripe.rs) uses, so that it can be run
end to end. Never part of the production path.

  stripe.py keys  STATE_DIR          make a test-mode secret key and a webhook
                                     signing secret (once); write credentials.json
  stripe.py serve STATE_DIR --port P

What it does, as Stripe does:
- Every call needs `Authorization: Bearer <secret key>`; every POST honours
  `Idempotency-Key` (the same key again answers the first answer; with other
  parameters it is a 400 idempotency_error).
- POST /v1/checkout/sessions (form, bracketed keys), GET /v1/checkout/sessions/<id>,
  POST /v1/checkout/sessions/<id>/expire, POST /v1/refunds (never more than
  paid; answered `pending`, then settled a second later by a
  `refund.updated` (succeeded) or `refund.failed` event).
- GET /pay/<session>: the hosted page; POST action=pay|close (notify=no loses
  the event).
- Webhooks: `checkout.session.completed` to the endpoint registered with
  POST /_sim/webhook {"url"} (an operator does this in Stripe's dashboard),
  signed `Stripe-Signature: t=..,v1=..` with the endpoint secret, resent until
  a 2xx.
- For tests: GET /_sim/trades/<session or client_reference_id>, POST
  /_sim/notify/<id> {"variant","times"} (variant "refund": the first refund's
  event again), POST /_sim/refund-outcome/<id> {"status": "succeeded" or a
  failure_reason}, POST /_sim/outage {"on","matching"}.
"""

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from flask import Flask, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Outages, now_beijing, post, render_pay_page, resend_until  # noqa: E402

# Stripe retries for up to three days with exponential backoff; compressed.
RESEND_DELAYS = [1, 2, 4, 8, 15, 30, 60]


def make_keys(state):
    state.mkdir(parents=True, exist_ok=True)
    path = state / "keys.json"
    if not path.exists():
        path.write_text(json.dumps({
            "secretKey": "sk_test_sim" + secrets.token_hex(12),
            "webhookSecret": "whsec_" + secrets.token_hex(16),
        }))
    keys = json.loads(path.read_text())
    (state / "credentials.json").write_text(json.dumps(keys))
    return keys


def signature_header(secret, timestamp, payload):
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def make_app(state):
    keys = make_keys(state)
    lock = threading.Lock()
    sessions = {}
    by_reference = {}
    intents = {}
    idempotent = {}
    webhook = {"url": None}
    outages = Outages()
    refund_outcomes = {}
    app = Flask("stripe-simulator")

    def error(status, kind, message, code=None):
        body = {"error": {"type": kind, "message": message}}
        if code:
            body["error"]["code"] = code
        return jsonify(body), status

    @app.before_request
    def check():
        if not request.path.startswith("/v1/"):
            return None
        if outages.hit(request.get_data(as_text=True)):
            return error(500, "api_error", "Stripe is having trouble (simulated outage)")
        if request.headers.get("Authorization") != f"Bearer {keys['secretKey']}":
            return error(401, "invalid_request_error", "Invalid API Key provided")
        if request.method == "POST" and (key := request.headers.get("Idempotency-Key")):
            seen = idempotent.get(key)
            if seen is not None:
                if seen["params"] != request.get_data(as_text=True):
                    return error(400, "idempotency_error",
                                 "Keys for idempotent requests can only be used with the same parameters they were first used with.")
                return app.response_class(seen["body"], status=seen["status"], mimetype="application/json")
        return None

    @app.after_request
    def remember(response):
        key = request.headers.get("Idempotency-Key")
        if request.path.startswith("/v1/") and request.method == "POST" and key and key not in idempotent \
                and response.status_code < 500:
            idempotent[key] = {"params": request.get_data(as_text=True), "status": response.status_code,
                               "body": response.get_data(as_text=True)}
        return response

    @app.post("/v1/checkout/sessions")
    def create_session():
        form = request.form
        if form.get("mode") != "payment":
            return error(400, "invalid_request_error", "mode must be payment", "parameter_invalid_empty")
        try:
            amount = int(form["line_items[0][price_data][unit_amount]"]) * int(form.get("line_items[0][quantity]", "1"))
            currency = form["line_items[0][price_data][currency]"]
        except (KeyError, ValueError):
            return error(400, "invalid_request_error", "line_items[0][price_data] is incomplete", "parameter_missing")
        if not form.get("success_url"):
            return error(400, "invalid_request_error", "success_url is required", "parameter_missing")
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "livemode": False,
            "client_reference_id": form.get("client_reference_id"), "amount_total": amount, "currency": currency,
            "payment_status": "unpaid", "status": "open", "payment_intent": None,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "success_url": form["success_url"], "cancel_url": form.get("cancel_url"),
            "url": f"{request.host_url}pay/{session_id}",
            "refunds": {}, "deliveries": [], "notify": None,
        }
        with lock:
            sessions[session_id] = session
            if session["client_reference_id"]:
                by_reference[session["client_reference_id"]] = session_id
        return jsonify(public(session))

    def public(session):
        return {k: v for k, v in session.items() if k not in ("refunds", "deliveries", "notify")}

    def find(ident):
        return sessions.get(ident) or sessions.get(by_reference.get(ident, ""))

    @app.get("/v1/checkout/sessions/<session_id>")
    def get_session(session_id):
        session = sessions.get(session_id)
        if session is None:
            return error(404, "invalid_request_error", f"No such checkout.session: '{session_id}'", "resource_missing")
        return jsonify(public(session))

    @app.post("/v1/checkout/sessions/<session_id>/expire")
    def expire(session_id):
        session = sessions.get(session_id)
        if session is None:
            return error(404, "invalid_request_error", f"No such checkout.session: '{session_id}'", "resource_missing")
        with lock:
            if session["status"] == "expired":
                return error(400, "invalid_request_error", "This Checkout Session is already expired.")
            if session["status"] != "open":
                return error(400, "invalid_request_error", "Only Checkout Sessions with a status in [\"open\"] can be expired.")
            session["status"] = "expired"
        return jsonify(public(session))

    @app.post("/v1/refunds")
    def refund():
        intent = request.form.get("payment_intent", "")
        session = sessions.get(intents.get(intent, ""))
        if session is None:
            return error(404, "invalid_request_error", f"No such payment_intent: '{intent}'", "resource_missing")
        amount = int(request.form.get("amount") or session["amount_total"])
        with lock:
            refunded = sum(r["amount"] for r in session["refunds"].values())
            if refunded + amount > session["amount_total"]:
                return error(400, "invalid_request_error",
                             "Refund amount is greater than unrefunded amount on charge", "amount_too_large")
            refund_id = "re_" + secrets.token_hex(12)
            refund = session["refunds"][refund_id] = {
                "id": refund_id, "object": "refund", "amount": amount, "currency": session["currency"],
                "payment_intent": intent, "status": "pending", "at": now_beijing(),
                "metadata": {k[9:-1]: v for k, v in request.form.items() if k.startswith("metadata[")},
                "deliveries": [], "notify": None}

        # Card refunds settle asynchronously: refund.updated (succeeded)
        # follows, or refund.failed when the card can no longer take it.
        def settle_later():
            time.sleep(1)
            with lock:
                failure = refund_outcomes.get(session["client_reference_id"] or "")
                refund.update(status="failed", failure_reason=failure) if failure else refund.update(status="succeeded")
            payload, headers = refund_event(refund)
            resend_until(refund, webhook["url"], payload, headers, "", RESEND_DELAYS)
        if webhook["url"]:
            threading.Thread(target=settle_later, daemon=True).start()
        return jsonify(public_refund(refund))

    def public_refund(refund):
        return {k: v for k, v in refund.items() if k not in ("deliveries", "notify", "at", "event_id")}

    def refund_event(refund, variant="genuine"):
        refund.setdefault("event_id", "evt_" + secrets.token_hex(12))
        body = {"id": refund["event_id"], "object": "event", "api_version": "2025-03-31.basil",
                "created": int(time.time()), "livemode": False,
                "type": "refund.failed" if refund["status"] == "failed" else "refund.updated",
                "data": {"object": public_refund(refund)}}
        payload = json.dumps(body, separators=(",", ":")).encode()
        timestamp = int(time.time())
        secret = "whsec_forged" if variant == "forged" else keys["webhookSecret"]
        return payload, {"Content-Type": "application/json; charset=utf-8",
                         "Stripe-Signature": signature_header(secret, timestamp, payload),
                         "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    # ------------------------------------------------------------ the buyer

    @app.get("/pay/<session_id>")
    def page(session_id):
        session = sessions.get(session_id)
        if session is None:
            return "No such checkout session", 404
        return render_pay_page("Stripe Checkout", "#635bff", f"Order {session['metadata'].get('orderId', '')}",
                               session_id, f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}",
                               session["status"], session["status"] == "open")

    @app.post("/pay/<session_id>")
    def pay(session_id):
        session = find(session_id)
        if session is None:
            return "No such checkout session", 404
        action = request.form.get("action", "pay")
        with lock:
            if session["status"] != "open":
                return f"this session can no longer be paid ({session['status']})", 409
            if action == "close":
                session["status"] = "expired"
            else:
                session.update(status="complete", payment_status="paid", payment_intent="pi_" + secrets.token_hex(12))
                intents[session["payment_intent"]] = session["id"]
                session["event_id"] = "evt_" + secrets.token_hex(12)
        if action != "close" and request.form.get("notify", "yes") != "no" and webhook["url"]:
            payload, headers = event(session)
            resend_until(session, webhook["url"], payload, headers, "", RESEND_DELAYS)
        if request.headers.get("accept", "").startswith("application/json"):
            return jsonify(public(session))
        return page(session["id"])

    # -------------------------------------------------------------- events

    def event(session, variant="genuine"):
        obj = public(session)
        if variant == "wrong-amount":
            obj["amount_total"] += 1
        body = {"id": session.get("event_id") or "evt_" + secrets.token_hex(12), "object": "event",
                "api_version": "2025-03-31.basil", "created": int(time.time()),
                "livemode": variant == "wrong-mode", "type": "checkout.session.completed",
                "data": {"object": obj}}
        if variant == "wrong-account":
            body["account"] = "acct_1Other000000000"
        if variant == "expired-later":
            body["type"], body["id"] = "checkout.session.expired", "evt_" + secrets.token_hex(12)
        payload = json.dumps(body, separators=(",", ":")).encode()
        timestamp = int(time.time()) - (301 if variant == "stale" else 0)
        secret = "whsec_forged" if variant == "forged" else keys["webhookSecret"]
        header = signature_header(secret, timestamp, payload)
        if variant == "rolled":
            old = signature_header("whsec_old_secret", timestamp, payload).split(",")[1]
            header = f"t={timestamp},{old},{header.split(',')[1]}"
        if variant == "tampered":
            payload = payload.replace(b'"payment_status":"paid"', b'"payment_status":"paid" ')
        return payload, {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                         "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    # --------------------------------------------------------------- tests

    @app.post("/_sim/webhook")
    def register_webhook():
        webhook["url"] = (request.get_json(force=True, silent=True) or {}).get("url")
        return jsonify(webhook)

    @app.get("/_sim/trades/<ident>")
    def ledger(ident):
        session = find(ident)
        if session is None:
            return jsonify({"error": "no such session"}), 404
        with lock:
            view = dict(session, refunded=sum(r["amount"] for r in session["refunds"].values()))
        return jsonify(view)

    @app.post("/_sim/notify/<ident>")
    def notify(ident):
        session = find(ident)
        if session is None:
            return jsonify({"error": "no such session"}), 404
        ask = request.get_json(force=True, silent=True) or {}
        variant = ask.get("variant", "genuine")
        if variant.startswith("refund"):
            # The session's first refund's result again, as Stripe resends.
            refund = next(iter(session["refunds"].values()), None)
            if refund is None or refund["status"] == "pending":
                return jsonify({"error": "no settled refund"}), 409
            payload, headers = refund_event(refund, variant.removeprefix("refund").lstrip("-") or "genuine")
        else:
            payload, headers = event(session, variant)
        answers = []
        for _ in range(int(ask.get("times", 1))):
            delivery = post(webhook["url"], payload, headers, "")
            session["deliveries"].append(delivery)
            answers.append(delivery)
        return jsonify(answers)

    @app.post("/_sim/refund-outcome/<ident>")
    def set_refund_outcome(ident):
        """How the session's next refunds end: succeeded, or failed with a
        Stripe failure_reason (e.g. expired_or_canceled_card)."""
        session = find(ident)
        status = (request.get_json(force=True, silent=True) or {}).get("status", "succeeded")
        refund_outcomes[session["client_reference_id"]] = None if status == "succeeded" else status
        return jsonify({"session": session["id"], "status": status})

    @app.post("/_sim/outage")
    def set_outage():
        ask = request.get_json(force=True, silent=True) or {}
        return jsonify(outages.set(bool(ask.get("on")), urllib.parse.quote_plus(ask.get("matching") or "")))

    @app.get("/_sim/health")
    def health():
        return jsonify({"ok": True, "webhook": webhook["url"]})

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("keys").add_argument("state", type=Path)
    serve = sub.add_parser("serve")
    serve.add_argument("state", type=Path)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--deliver-to", default="", help="unused: Stripe calls the URL registered with it")
    args = parser.parse_args()
    if args.command == "keys":
        make_keys(args.state)
        print(args.state / "credentials.json")
        return
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_app(args.state).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    sys.exit(main())
