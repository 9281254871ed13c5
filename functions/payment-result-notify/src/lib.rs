//! `POST /payments/notify`: the provider's result callback. No JWT: it is
//! authenticated by its `X-Payment-Signature` over the raw body, checked
//! before anything else is read. A first result settles a pending payment
//! and writes its event in one transaction; repeats change nothing.

use adapters::payments::sandbox::{HEADER, SandboxProvider};
use adapters::payments::{CallbackOutcome, Payments};
use domain::clock;
use domain::payments::{ProviderNotification, SANDBOX};
use http_edge::http::{MAX_BODY_BYTES, correlation_id, json, parse_json};
use http_edge::{ApiError, ApiResult};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;

pub async fn handle(payments: &Payments, provider: &SandboxProvider, req: Request) -> ApiResult {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let signature = req.headers().get(HEADER).map(|v| v.to_str().unwrap_or(""));
    provider
        .verify_notification(signature, body, clock::now().unix_timestamp())
        .await?;

    let notification: ProviderNotification = parse_json(body)?;
    notification.validate()?;
    let payment = payments
        .get(&notification.payment_id)
        .await?
        // The sandbox speaks only for its own payments: a real provider's
        // is settled by that provider's notification, never by ours.
        .filter(|p| p.provider == SANDBOX)
        .ok_or_else(|| ApiError::payment_not_found(&notification.payment_id))?;

    match payments
        .record_callback(&payment, &notification, &correlation_id(&req))
        .await?
    {
        CallbackOutcome::AmountMismatch => Err(ApiError::conflict(
            "AMOUNT_MISMATCH",
            format!(
                "the payment is {} {} but the callback says {} {}; nothing was marked paid",
                payment.amount, payment.currency, notification.amount, notification.currency
            ),
        )
        .with("paymentId", payment.payment_id.as_str())),
        CallbackOutcome::OrderMismatch => Err(ApiError::conflict(
            "ORDER_MISMATCH",
            format!("payment {} belongs to another order", payment.payment_id),
        )),
        // Acknowledged either way, or the provider resends a result that
        // will never apply; `applied` says whether this one changed anything.
        outcome => Ok(json(
            StatusCode::OK,
            &json!({
                "received": true,
                "applied": outcome == CallbackOutcome::Applied,
                "duplicate": outcome == CallbackOutcome::Duplicate,
            }),
        )),
    }
}
