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

use serde::Deserialize;

use super::webhook_signature::{self, SignatureError};

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

impl Event {
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
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
}
