//! `POST /payments/notify/stripe`: Stripe's webhook (the endpoint an
//! operator registers in Stripe's dashboard). No JWT: `Stripe-Signature`
//! (HMAC-SHA256 of `"{t}.{raw body}"` with the endpoint's secret, any of
//! its `v1`s, 300 s tolerance) is checked before the body is parsed, then
//! live or test mode and the account, then the session's amount and
//! currency against the payment. Stripe sends events more than once and out
//! of order: the payment's state machine decides, so a repeat or a late
//! older event changes nothing. Answered 200 `{"received": true}`.

use adapters::payments::Payments;
use adapters::payments::stripe::{self, SIGNATURE, StripeProvider};
use domain::clock;
use domain::payments::VerifiedCallback;
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
    let (event_id, notification) = match callback {
        VerifiedCallback::Ignored {
            notification_id,
            why,
        } => {
            tracing::info!(
                event_id = notification_id,
                why,
                "Stripe event acknowledged without effect"
            );
            return Ok(received());
        }
        VerifiedCallback::Payment {
            notification_id,
            notification,
        } => (notification_id, notification),
    };
    let payment_id = notification.payment_id.clone();
    // Unknown: not acknowledged, so Stripe sends it again (for three days).
    let (payment, outcome) = payments
        .record_notification(stripe::NAME, notification, &correlation_id(&req))
        .await?
        .ok_or_else(|| ApiError::payment_not_found(&payment_id))?;
    tracing::info!(
        event_id,
        payment_id = %payment.payment_id,
        outcome = outcome.as_str(),
        "Stripe event recorded"
    );
    Ok(received())
}

fn received() -> lambda_http::Response<lambda_http::Body> {
    json(StatusCode::OK, &json!({"received": true}))
}
