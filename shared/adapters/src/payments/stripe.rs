//! Stripe's API for cards, through Checkout Sessions (`mode=payment`).
//!
//! - Calls: the secret key as a Bearer token, form-encoded bodies with
//!   bracketed keys (`line_items[0][price_data][currency]`), an
//!   `Idempotency-Key` on every POST.
//! - Webhooks: `Stripe-Signature: t=..,v1=..[,v1=..]`, HMAC-SHA256 over
//!   `"{t}.{raw body}"` with the endpoint's secret, checked against every
//!   `v1` ([`super::webhook_signature`]); 300 s tolerance. Stripe may send an
//!   event more than once and in any order: the payment's state machine,
//!   not arrival order, decides.

use std::sync::Arc;

use bytes::Bytes;
use domain::payments::{
    Checkout, NotifiedResult, Payment, PaymentMethod, PaymentProvider, ProviderError,
    ProviderNotification, RefundOrder, RefundReceipt, RefundResult, RefundStatus, TradeState,
    VerifiedCallback, VerifyError,
};
use http_body_util::Full;
use serde::Deserialize;

use super::http::{CallError, ProviderHttp, with_one_retry};
use super::webhook_signature::{self, SignatureError};
use crate::secrets::Credentials;

pub const API: &str = "https://api.stripe.com";

pub const SIGNATURE: &str = "stripe-signature";

/// Checks a webhook's `Stripe-Signature` against its raw body at `now`.
pub fn verify(
    endpoint_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    webhook_signature::verify(endpoint_secret, header, body, now)
}

/// A webhook event: the fields the checks need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub livemode: bool,
    /// The connected account, for Connect platforms; absent for a shop's
    /// own account.
    #[serde(default)]
    pub account: Option<String>,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// A Checkout Session, as events and `GET /v1/checkout/sessions/{id}`
/// carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    /// Our payment id, set when the session was created.
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// Minor units, like ours.
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// Lower case (`"cny"`).
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    /// `open`, `complete` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A Refund, as `refund.*` events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StripeRefund {
    pub id: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    pub metadata: RefundMetadata,
}

/// What our refunds carry in their metadata (set when they are made).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundMetadata {
    pub refund_id: String,
    pub payment_id: String,
}

impl StripeRefund {
    /// Its result once final: `None` while still in progress.
    pub fn result(&self) -> Option<(RefundStatus, Option<String>)> {
        match self.status.as_str() {
            "succeeded" => Some((RefundStatus::Succeeded, None)),
            "failed" | "canceled" => Some((
                RefundStatus::Failed,
                Some(format!(
                    "Stripe: refund {} ({})",
                    self.status,
                    self.failure_reason.as_deref().unwrap_or("no reason given")
                )),
            )),
            _ => None,
        }
    }
}

impl Event {
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The refund a `refund.*` event is about, if it is one of ours (made
    /// with our metadata); a refund made in Stripe's dashboard has none.
    pub fn refund(&self) -> Option<StripeRefund> {
        self.kind
            .starts_with("refund.")
            .then(|| serde_json::from_value(self.data.object.clone()).ok())
            .flatten()
    }

    /// The Checkout Session an event is about, if it is about one.
    pub fn checkout_session(&self) -> Option<CheckoutSession> {
        self.kind
            .starts_with("checkout.session.")
            .then(|| serde_json::from_value(self.data.object.clone()).ok())
            .flatten()
    }
}

/// A form body with Stripe's bracketed keys, in the order given.
pub fn form<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The Stripe account's credentials, one SSM SecureString parameter of
/// JSON: `{"secretKey", "webhookSecret", "accountId"}` (`accountId` only
/// for a Connect platform's connected account). Live or test mode follows
/// the secret key (`sk_live_…` / `sk_test_…`), and every event's `livemode`
/// must agree.
pub struct Account {
    secret_key: String,
    webhook_secret: String,
    account_id: Option<String>,
    livemode: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("livemode", &self.livemode)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Stored {
            secret_key: String,
            webhook_secret: String,
            #[serde(default)]
            account_id: Option<String>,
        }
        let stored: Stored =
            serde_json::from_slice(json).map_err(|e| format!("Stripe credentials: {e}"))?;
        let livemode = match stored.secret_key.get(..8) {
            Some("sk_live_" | "rk_live_") => true,
            Some("sk_test_" | "rk_test_") => false,
            _ => {
                return Err(
                    "secretKey must be a Stripe secret key (sk_live_… or sk_test_…)".into(),
                );
            }
        };
        if stored.webhook_secret.is_empty() {
            return Err("webhookSecret is empty".into());
        }
        Ok(Self {
            secret_key: stored.secret_key,
            webhook_secret: stored.webhook_secret,
            account_id: stored.account_id.filter(|a| !a.is_empty()),
            livemode,
        })
    }
}

/// The provider's name on payments it took.
pub const NAME: &str = "stripe";

/// `CARD` payments at Stripe through Checkout Sessions.
pub struct StripeProvider {
    account: Credentials<Account>,
    api: String,
    /// Where Stripe's page sends the buyer back (the shop's order page);
    /// the API's own URL when not set.
    return_url: Option<String>,
    http: ProviderHttp,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProvider")
            .field("account", &self.account)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    pub fn new(
        account: Credentials<Account>,
        api: impl Into<String>,
        return_url: Option<String>,
        http: ProviderHttp,
    ) -> Self {
        Self {
            account,
            api: api.into(),
            return_url,
            http,
        }
    }

    /// The provider as a deployed function uses it: credentials in the SSM
    /// parameter `STRIPE_CREDENTIALS_PARAM`, the API `STRIPE_API`
    /// (Stripe's own by default), the buyer's way back `STRIPE_RETURN_URL`.
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, crate::config::MissingSetting> {
        let name = crate::config::required("STRIPE_CREDENTIALS_PARAM")?;
        let api = std::env::var("STRIPE_API").unwrap_or_else(|_| API.into());
        let return_url = std::env::var("STRIPE_RETURN_URL")
            .ok()
            .filter(|u| !u.is_empty());
        Ok(Self::new(
            Credentials::in_ssm(config, name, Account::parse),
            api,
            return_url,
            ProviderHttp::default(),
        ))
    }

    async fn account(&self) -> Result<Arc<Account>, ProviderError> {
        self.account.get().await.map_err(|e| e.for_provider(NAME))
    }

    /// Verifies and judges a webhook: the signature against every `v1`
    /// (re-reading the secret once if a rolled one may be waiting), then
    /// live or test mode and the account, then the session.
    pub async fn verify_callback(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedCallback, VerifyError> {
        let mut account = self.account().await?;
        if let Err(err) = verify(account.webhook_secret.as_bytes(), signature, body, now) {
            let newer = match err {
                SignatureError::Mismatch => self
                    .account
                    .refresh()
                    .await
                    .map_err(|e| e.for_provider(NAME))?,
                _ => None,
            };
            let Some(newer) = newer else {
                return Err(VerifyError::BadSignature(err.to_string()));
            };
            verify(newer.webhook_secret.as_bytes(), signature, body, now)
                .map_err(|e| VerifyError::BadSignature(e.to_string()))?;
            account = newer;
        }
        let event = Event::parse(body)
            .map_err(|e| VerifyError::Foreign(format!("not a Stripe event: {e}")))?;
        let foreign = |why: &str| VerifyError::Foreign(format!("event {}: {why}", event.id));
        if event.livemode != account.livemode {
            return Err(foreign(
                "another mode (live vs test) than this deployment's key",
            ));
        }
        if event.account != account.account_id {
            return Err(foreign("for another account"));
        }
        let ignored = |why: String| VerifiedCallback::Ignored {
            notification_id: event.id.clone(),
            why,
        };
        if let Some(refund) = event.refund() {
            return Ok(match refund.result() {
                Some((refund_status, failure_reason)) => VerifiedCallback::Refund {
                    notification_id: event.id.clone(),
                    result: RefundResult {
                        payment_id: refund.metadata.payment_id,
                        refund_id: refund.metadata.refund_id,
                        provider_refund_id: refund.id,
                        refund_status,
                        failure_reason,
                    },
                },
                None => ignored(format!("refund {} is {}", refund.id, refund.status)),
            });
        }
        let result = match event.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                NotifiedResult::Success
            }
            "checkout.session.async_payment_failed" => NotifiedResult::Failed,
            other => return Ok(ignored(format!("event {other}"))),
        };
        let session = event
            .checkout_session()
            .ok_or_else(|| foreign("not a Checkout Session"))?;
        // A completed session with a delayed method (a bank debit) is paid
        // only once async_payment_succeeded says so.
        if result == NotifiedResult::Success && session.payment_status != "paid" {
            return Ok(ignored(format!(
                "payment_status {}",
                session.payment_status
            )));
        }
        let (Some(payment_id), Some(amount), Some(currency)) = (
            session.client_reference_id,
            session.amount_total,
            session.currency,
        ) else {
            return Err(foreign(
                "the session lacks client_reference_id, amount_total or currency",
            ));
        };
        Ok(VerifiedCallback::Payment {
            notification_id: event.id.clone(),
            notification: ProviderNotification {
                payment_id,
                order_id: String::new(),
                payment_status: result,
                amount,
                currency: currency.to_ascii_uppercase(),
                provider_transaction_id: session.payment_intent.unwrap_or(session.id),
                failure_reason: (result == NotifiedResult::Failed)
                    .then(|| "the payment failed at Stripe".to_owned()),
            },
        })
    }

    /// One call: the secret key as a Bearer token, a form body, and on a
    /// POST the `Idempotency-Key` under which one retry is safe (Stripe
    /// answers a repeat with the first answer).
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, CallError> {
        // Without a key a retry could do it twice: only GETs and keyed
        // POSTs are retried.
        let retry = method == http::Method::GET || idempotency_key.is_some();
        with_one_retry(path, retry, || {
            self.call_once(method.clone(), path, form.as_deref(), idempotency_key)
        })
        .await
    }

    async fn call_once(
        &self,
        method: http::Method,
        path: &str,
        form: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, CallError> {
        let account = self.account().await?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api.trim_end_matches('/')))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", account.secret_key),
            )
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(connected) = &account.account_id {
            request = request.header("Stripe-Account", connected);
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default().to_owned())))
            .map_err(|e| ProviderError::Unavailable(format!("request: {e}")))?;
        let answer = self.http.send(request).await?;
        let status = answer.status.as_u16();
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status.is_success() {
            return Ok(body);
        }
        if status == 429 || status >= 500 {
            return Err(
                ProviderError::Unavailable(format!("Stripe answered HTTP {status}")).into(),
            );
        }
        let error = &body["error"];
        Err(CallError::Business {
            provider: "Stripe",
            status,
            code: error["code"]
                .as_str()
                .or(error["type"].as_str())
                .unwrap_or("error")
                .to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    fn session_of(payment: &Payment) -> Result<&str, ProviderError> {
        payment.provider_reference.as_deref().ok_or_else(|| {
            ProviderError::Refused(format!(
                "payment {} has no Checkout Session",
                payment.payment_id
            ))
        })
    }
}

impl PaymentProvider for StripeProvider {
    fn name_for(&self, _method: PaymentMethod) -> &'static str {
        NAME
    }

    async fn checkout(
        &self,
        payment: &Payment,
        callback_base: &str,
    ) -> Result<Checkout, ProviderError> {
        let back = self
            .return_url
            .clone()
            .unwrap_or_else(|| callback_base.trim_end_matches('/').to_owned());
        let amount = payment.amount.to_string();
        let currency = payment.currency.to_ascii_lowercase();
        let name = format!("Order {}", payment.order_id);
        let success = format!("{back}?paymentId={}&result=success", payment.payment_id);
        let cancel = format!("{back}?paymentId={}&result=cancel", payment.payment_id);
        let body = form([
            ("mode", "payment"),
            ("client_reference_id", payment.payment_id.as_str()),
            ("success_url", success.as_str()),
            ("cancel_url", cancel.as_str()),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", currency.as_str()),
            ("line_items[0][price_data][unit_amount]", amount.as_str()),
            (
                "line_items[0][price_data][product_data][name]",
                name.as_str(),
            ),
            ("metadata[paymentId]", payment.payment_id.as_str()),
            ("metadata[orderId]", payment.order_id.as_str()),
            (
                "payment_intent_data[metadata][paymentId]",
                payment.payment_id.as_str(),
            ),
        ]);
        let key = format!("checkout-{}", payment.payment_id);
        let session = self
            .call(
                http::Method::POST,
                "/v1/checkout/sessions",
                Some(body),
                Some(&key),
            )
            .await?;
        let (Some(id), Some(url)) = (session["id"].as_str(), session["url"].as_str()) else {
            return Err(ProviderError::Unavailable(
                "Stripe's session has no id or url".into(),
            ));
        };
        Ok(Checkout {
            payment_url: url.to_owned(),
            qr_code: None,
            provider_reference: Some(id.to_owned()),
        })
    }

    async fn refund(
        &self,
        payment: &Payment,
        refund: &RefundOrder,
    ) -> Result<RefundReceipt, ProviderError> {
        let intent = payment.provider_transaction_id.as_deref().ok_or_else(|| {
            ProviderError::Refused(format!(
                "payment {} has no PaymentIntent",
                payment.payment_id
            ))
        })?;
        let amount = refund.amount.to_string();
        let body = form([
            ("payment_intent", intent),
            ("amount", amount.as_str()),
            ("metadata[refundId]", refund.refund_id.as_str()),
            ("metadata[paymentId]", payment.payment_id.as_str()),
        ]);
        let answer = self
            .call(
                http::Method::POST,
                "/v1/refunds",
                Some(body),
                Some(&refund.refund_id),
            )
            .await?;
        let refund_status = match answer["status"].as_str() {
            Some("succeeded") => RefundStatus::Succeeded,
            // refund.updated or refund.failed follows.
            Some("pending" | "requires_action") => RefundStatus::Pending,
            other => {
                return Err(ProviderError::Refused(format!(
                    "Stripe refund status {other:?}"
                )));
            }
        };
        Ok(RefundReceipt {
            provider_refund_id: answer["id"]
                .as_str()
                .unwrap_or(&refund.refund_id)
                .to_owned(),
            refund_status,
        })
    }

    async fn query(&self, payment: &Payment) -> Result<TradeState, ProviderError> {
        let session: CheckoutSession = serde_json::from_value(
            self.call(
                http::Method::GET,
                &format!("/v1/checkout/sessions/{}", Self::session_of(payment)?),
                None,
                None,
            )
            .await?,
        )
        .map_err(|e| ProviderError::Unavailable(format!("Stripe's session: {e}")))?;
        Ok(
            match (session.payment_status.as_str(), session.status.as_deref()) {
                ("paid", _) => TradeState::Paid {
                    provider_transaction_id: session.payment_intent.unwrap_or(session.id),
                    amount: session.amount_total.unwrap_or_default(),
                    currency: session.currency.unwrap_or_default().to_ascii_uppercase(),
                },
                (_, Some("expired")) => TradeState::Closed,
                _ => TradeState::Open,
            },
        )
    }

    async fn close(&self, payment: &Payment) -> Result<(), ProviderError> {
        let session = Self::session_of(payment)?;
        let key = format!("expire-{}", payment.payment_id);
        match self
            .call(
                http::Method::POST,
                &format!("/v1/checkout/sessions/{session}/expire"),
                Some(String::new()),
                Some(&key),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already expired: the same end.
            Err(CallError::Business {
                status: 400,
                message,
                ..
            }) if message.contains("expired") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/stripe-webhooks.json");

    #[test]
    fn stripes_own_signer_and_verifier_agree_with_ours() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let now = v["timestamp"].as_i64().unwrap() + 30;
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 7);
        for case in cases {
            let ours = verify(
                case["secret"].as_str().unwrap().as_bytes(),
                case["header"].as_str(),
                case["body"].as_str().unwrap().as_bytes(),
                now,
            );
            assert_eq!(
                ours.is_ok(),
                case["stripe_verifies"].as_bool().unwrap(),
                "{}: {ours:?}",
                case["name"]
            );
        }
    }

    #[test]
    fn stale_stripe_signatures_are_refused() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let signed = &v["cases"][0];
        let at = v["timestamp"].as_i64().unwrap();
        let tolerance = v["tolerance_seconds"].as_i64().unwrap();
        let check = |now| {
            verify(
                signed["secret"].as_str().unwrap().as_bytes(),
                signed["header"].as_str(),
                signed["body"].as_str().unwrap().as_bytes(),
                now,
            )
        };
        assert_eq!(check(at + tolerance), Ok(()));
        assert_eq!(check(at + tolerance + 1), Err(SignatureError::Stale));
    }

    #[test]
    fn the_event_names_its_session() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let event = Event::parse(v["cases"][0]["body"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(event.kind, "checkout.session.completed");
        assert!(!event.livemode);
        let session = event.checkout_session().unwrap();
        assert_eq!(session.payment_status, "paid");
        assert_eq!(session.amount_total, Some(16800));
        assert_eq!(session.currency.as_deref(), Some("cny"));
        assert_eq!(
            session.client_reference_id.as_deref(),
            Some("01JFIXTUREPAYMENT0000000000")
        );
    }

    #[test]
    fn forms_use_bracketed_keys() {
        assert_eq!(
            form([
                ("line_items[0][quantity]", "1"),
                ("metadata[orderId]", "o 1")
            ]),
            "line_items%5B0%5D%5Bquantity%5D=1&metadata%5BorderId%5D=o+1"
        );
    }

    fn provider(secret_key: &str, webhook_secret: &str) -> StripeProvider {
        let credentials =
            serde_json::json!({"secretKey": secret_key, "webhookSecret": webhook_secret});
        StripeProvider::new(
            Credentials::known(credentials.to_string(), Account::parse),
            "http://127.0.0.1:9",
            None,
            ProviderHttp::default(),
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stripes_signed_event_is_judged_after_the_signature() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let case = &v["cases"][0];
        let (secret, header, body) = (
            case["secret"].as_str().unwrap(),
            case["header"].as_str(),
            case["body"].as_str().unwrap().as_bytes(),
        );
        let now = v["timestamp"].as_i64().unwrap() + 30;
        match provider("sk_test_x", secret)
            .verify_callback(header, body, now)
            .await
            .unwrap()
        {
            VerifiedCallback::Payment {
                notification_id,
                notification,
            } => {
                assert_eq!(notification_id, "evt_1QfixtureCheckoutDone");
                assert_eq!(notification.payment_id, "01JFIXTUREPAYMENT0000000000");
                assert_eq!(
                    (notification.amount, notification.currency.as_str()),
                    (16800, "CNY")
                );
                assert_eq!(notification.provider_transaction_id, "pi_3QfixtureIntent");
            }
            other => panic!("{other:?}"),
        }
        // A live deployment refuses a test-mode event, however well signed.
        assert!(matches!(
            provider("sk_live_x", secret)
                .verify_callback(header, body, now)
                .await,
            Err(VerifyError::Foreign(_))
        ));
        assert!(matches!(
            provider("sk_test_x", "whsec_other")
                .verify_callback(header, body, now)
                .await,
            Err(VerifyError::BadSignature(_))
        ));
        assert!(matches!(
            provider("sk_test_x", secret)
                .verify_callback(None, body, now)
                .await,
            Err(VerifyError::BadSignature(_))
        ));
        assert!(Account::parse(br#"{"secretKey":"pk_test_x","webhookSecret":"w"}"#).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refund_events_name_our_refund_and_say_how_it_ended() {
        let now = domain::clock::now().unix_timestamp();
        let event = |kind: &str, status: &str, metadata: serde_json::Value| {
            serde_json::json!({
                "id": "evt_refund", "object": "event", "type": kind, "livemode": false,
                "data": {"object": {"id": "re_1", "object": "refund", "amount": 16800,
                    "status": status, "failure_reason": "expired_or_canceled_card", "metadata": metadata}},
            })
            .to_string()
        };
        let ours = serde_json::json!({"refundId": "pay1-whole", "paymentId": "pay1"});
        let judge = |body: String| async move {
            let header = webhook_signature::sign(b"whsec_x", now, body.as_bytes());
            provider("sk_test_x", "whsec_x")
                .verify_callback(Some(&header), body.as_bytes(), now)
                .await
        };
        for (kind, status, expected) in [
            ("refund.updated", "succeeded", Some(RefundStatus::Succeeded)),
            ("refund.failed", "failed", Some(RefundStatus::Failed)),
            ("refund.updated", "canceled", Some(RefundStatus::Failed)),
            ("refund.updated", "pending", None),
        ] {
            match (
                judge(event(kind, status, ours.clone())).await.unwrap(),
                expected,
            ) {
                (VerifiedCallback::Refund { result, .. }, Some(expected)) => {
                    assert_eq!(
                        (result.payment_id.as_str(), result.refund_id.as_str()),
                        ("pay1", "pay1-whole")
                    );
                    assert_eq!(result.provider_refund_id, "re_1");
                    assert_eq!(result.refund_status, expected, "{status}");
                    assert_eq!(
                        result.failure_reason.is_some(),
                        expected == RefundStatus::Failed
                    );
                }
                (VerifiedCallback::Ignored { .. }, None) => {}
                (other, _) => panic!("{kind} {status}: {other:?}"),
            }
        }
        // A refund made in Stripe's dashboard carries none of our metadata.
        assert!(matches!(
            judge(event("refund.updated", "succeeded", serde_json::json!({}))).await,
            Ok(VerifiedCallback::Ignored { .. })
        ));
    }
}
