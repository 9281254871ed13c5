"""What the provider simulators share: RSA keys and SHA256withRSA, delivering a
notification to the API (the local host mapping included) and resending it on
a compressed schedule until the provider's acknowledgement comes back.
Test tooling only."""

import base64
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = timezone(timedelta(hours=8))


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_private(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_private(pem):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def load_public(pem):
    return serialization.load_pem_public_key(pem.encode())


def rsa_sign(private_key, text):
    data = text if isinstance(text, bytes) else text.encode()
    return base64.b64encode(private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verifies(public_key, text, signature):
    data = text if isinstance(text, bytes) else text.encode()
    try:
        public_key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:
        return False


def now_beijing():
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def post(url, body, headers, deliver_to):
    """POSTs a notification; the API's answer as {at, status, body}.

    The API names the execute-api host the request came in on
    (https://<api>.execute-api.localhost/...); locally that host is the
    emulator, so `deliver_to` receives it over HTTP with that Host header."""
    parts = urllib.parse.urlsplit(url)
    target, headers = url, dict(headers)
    if deliver_to and parts.hostname and parts.hostname.endswith(".localhost"):
        target = deliver_to.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        headers["Host"] = parts.hostname
    request = urllib.request.Request(target, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode("utf-8", "replace")
    except Exception as err:  # a connection failure is a failed delivery
        status, text = 0, str(err)
    return {"at": now_beijing(), "status": status, "body": text[:500]}


def is_2xx(delivery):
    return 200 <= delivery["status"] < 300


def resend_until(holder, url, body, headers, deliver_to, delays, acknowledged=is_2xx):
    """In the background: POSTs the notification at once, then after each of
    `delays` seconds, until acknowledged(delivery); each try is appended to
    holder["deliveries"], and holder["notify"] says how it ended
    ("acknowledged" or "gave up")."""

    def run():
        for delay in [0] + list(delays):
            time.sleep(delay)
            delivery = post(url, body, headers, deliver_to)
            holder["deliveries"].append(delivery)
            if acknowledged(delivery):
                holder["notify"] = "acknowledged"
                return
        holder["notify"] = "gave up"

    threading.Thread(target=run, daemon=True).start()


PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
    "button{font-size:1.1rem;padding:.6rem 1rem;margin:.3rem 0;width:100%}"
    "#pay{color:#fff;border:0}"
)


def render_pay_page(brand, colour, subject, trade_no, amount_text, status, payable):
    """The page a buyer (or a browser test) pays on: #pay and #fail buttons."""
    import html

    buttons = "" if not payable else f"""
  <form method="post"><input type="hidden" name="action" value="pay">
    <button id="pay" style="background:{colour}" type="submit">确认付款 Pay {html.escape(amount_text)}</button></form>
  <form method="post"><input type="hidden" name="action" value="close">
    <button id="fail" type="submit">取消 Cancel</button></form>"""
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(brand)} (simulator)</title>
<style>{PAGE_STYLE}</style></head>
<body><h1>{html.escape(brand)} <small>(local simulator)</small></h1>
<p>{html.escape(subject)}</p><p>订单号 <code>{html.escape(trade_no)}</code></p>
<p id="amount">{html.escape(amount_text)}</p><p>状态 <b id="status">{html.escape(status)}</b></p>{buttons}
</body></html>"""


class Transfers:
    """A provider's merchant transfers (payouts), one per merchant id
    (Alipay's out_biz_no, WeChat Pay's out_bill_no) however often it is
    sent, as both providers keep them. For tests, a payee whose account
    contains "nobody" does not exist, and `lose_answers` makes the next
    answers to transfers whose payee contains a text be lost after the
    transfer is made (a timeout on the way back)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}
        self.losing = {}

    def transfer(self, no, amount, payee, reference):
        """(transfer, fresh, answer_lost): the transfer under `no`, made now
        if new; None when `no` was used with another amount or payee."""
        with self.lock:
            found = self.by_id.get(no)
            fresh = found is None
            if fresh:
                found = self.by_id[no] = {
                    "no": no, "amount": amount, "payee": payee, "reference": reference,
                    "status": "FAIL" if "nobody" in payee else "SUCCESS",
                    "at": now_beijing(), "requests": 0,
                }
            elif found["amount"] != amount or found["payee"] != payee:
                return None, False, False
            found["requests"] += 1
            lost = False
            for text, left in self.losing.items():
                if left > 0 and text in payee:
                    self.losing[text] = left - 1
                    lost = True
            return dict(found), fresh, lost

    def get(self, no):
        with self.lock:
            found = self.by_id.get(no)
            return dict(found) if found else None

    def lose_answers(self, matching, times):
        with self.lock:
            self.losing[matching] = int(times)


class Outages:
    """Texts whose calls fail as in a provider outage, each on until turned
    off by the same text. A set, not one switch: tests run at once (several
    binaries against one simulator), and one test turning its outage off
    must not end another's."""

    def __init__(self):
        self.lock = threading.Lock()
        self.matching = set()

    def set(self, on, matching):
        with self.lock:
            (self.matching.add if on else self.matching.discard)(matching)
            return {"on": sorted(self.matching)}

    def hit(self, text):
        with self.lock:
            return any(m in text for m in self.matching)
