//! `POST /payments` `{orderId, paymentMethod}`: starts paying one of the
//! caller's unpaid orders. The amount is the order's, never the client's.
//! While the order has a pending payment with the same method, that payment
//! is returned (200); another method replaces it (201, the old one expires).
//! Honours `Idempotency-Key`.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::http::{created, json, json_body, stored_json};
use shared::idempotency::{IdempotencyKey, fingerprint};
use shared::order::{order_not_found, plausible_order_id};
use shared::orders::Orders;
use shared::payment::{InitiatePaymentRequest, PaymentProvider};
use shared::payments::{Initiation, Payments};
use shared::{ApiResult, Caller};

pub async fn handle(
    orders: &Orders,
    payments: &Payments,
    provider: &impl PaymentProvider,
    req: Request,
) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let key = IdempotencyKey::from_request(&req, &caller.user_id, "initiatePayment")?;
    let body: InitiatePaymentRequest = json_body(&req)?;
    caller.check_claimed_user(body.user_id.as_deref())?;
    let idempotency = key.map(|key| (key, fingerprint(&body)));
    // A retry is answered as the original was, before any check of the
    // order's state: the order may have been paid or cancelled since.
    if let Some((key, fingerprint)) = &idempotency
        && let Some(original) = payments.recorded_answer(key, fingerprint).await?
    {
        return Ok(stored_json(original.status, original.body));
    }
    payments.take_rate_token(&caller.user_id).await?;
    if !plausible_order_id(&body.order_id) {
        return Err(order_not_found(&body.order_id));
    }
    let order = orders
        .get_owned(&body.order_id, &caller.user_id)
        .await?
        .ok_or_else(|| order_not_found(&body.order_id))?;

    Ok(
        match payments
            .initiate(&order, body.payment_method, provider, idempotency)
            .await?
        {
            Initiation::Created(payment) => {
                created(&payment, &format!("/payments/{}", payment.payment_id))
            }
            Initiation::Existing(payment) => json(StatusCode::OK, &payment),
            Initiation::Replayed(original) => stored_json(original.status, original.body),
        },
    )
}
