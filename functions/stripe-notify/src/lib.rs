//! `POST /payments/notify/stripe`: Stripe's webhook (the endpoint an
//! operator registers in Stripe's dashboard). No JWT: `Stripe-Signature`
//! (HMAC-SHA256 of `"{t}.{raw body}"` with the endpoint's secret, any of
//! its `v1`s, 300 s tolerance) is checked before the body is parsed, then
//! live or test mode and the account, then the session's amount and
//! currency against the payment. Stripe sends events more than once and out
//! of order: the payment's state machine decides, so a repeat or a late
//! older event changes nothing. Answered 200 `{"received": true}`.

use adapters::payments::stripe::{self, SIGNATURE, StripeProvider};
use adapters::payments::{NotificationOutcome, Payments};
use domain::clock;
use http_edge::http::{MAX_BODY_BYTES, correlation_id, json};
use http_edge::{ApiError, ApiResult};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;

pub async fn handle(payments: &Payments, stripe: &StripeProvider, req: Request) -> ApiResult {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let signature = req
        .headers()
        .get(SIGNATURE)
        .map(|v| v.to_str().unwrap_or(""));
    let callback = stripe
        .verify_callback(signature, body, clock::now().unix_timestamp())
        .await?;

    // Unknown: not acknowledged, so the provider sends it again (it may
    // merely have overtaken our write; one that never applies stops after
    // the provider's last try). Every other outcome is acknowledged: a
    // resend of a signed notification that did not apply never would.
    match payments
        .apply_notification(stripe::NAME, callback, &correlation_id(&req))
        .await?
    {
        NotificationOutcome::UnknownPayment(id) => Err(ApiError::payment_not_found(&id)),
        NotificationOutcome::Ignored | NotificationOutcome::Recorded(_) => Ok(received()),
    }
}

fn received() -> lambda_http::Response<lambda_http::Body> {
    json(StatusCode::OK, &json!({"received": true}))
}
