//! `POST /payments` `{orderId, paymentMethod}`: starts paying one of the
//! caller's unpaid orders. The amount is the order's, never the client's.
//! While the order has a pending payment with the same method, that payment
//! is returned (200); another method replaces it (201, the old one expires).
//! Honours `Idempotency-Key`.

use adapters::idempotency::fingerprint;
use adapters::orders::Orders;
use adapters::payments::{Initiation, Payments};
use domain::orders::plausible_order_id;
use domain::payments::{InitiatePaymentRequest, PaymentProvider};
use http_edge::http::{created, json, json_body, public_base_url};
use http_edge::idempotency::replayed;
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(
    orders: &Orders,
    payments: &Payments,
    provider: &impl PaymentProvider,
    req: Request,
) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let key = http_edge::idempotency::key(&req, &caller.user_id, "initiatePayment")?;
    let body: InitiatePaymentRequest = json_body(&req)?;
    caller.check_claimed_user(body.user_id.as_deref())?;
    let idempotency = key.map(|key| (key, fingerprint(&body)));
    // A retry is answered as the original was, before any check of the
    // order's state: the order may have been paid or cancelled since.
    if let Some((key, fingerprint)) = &idempotency
        && let Some(original) = payments.recorded_answer(key, fingerprint).await?
    {
        return Ok(replayed(original));
    }
    payments.take_rate_token(&caller.user_id).await?;
    if !plausible_order_id(&body.order_id) {
        return Err(ApiError::order_not_found(&body.order_id));
    }
    let order = orders
        .get_owned(&body.order_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::order_not_found(&body.order_id))?;

    Ok(
        match payments
            .initiate(
                &order,
                body.payment_method,
                provider,
                &public_base_url(&req),
                idempotency,
            )
            .await?
        {
            Initiation::Created(payment) => {
                created(&payment, &format!("/payments/{}", payment.payment_id))
            }
            Initiation::Existing(payment) => json(StatusCode::OK, &payment),
            Initiation::Replayed(original) => replayed(original),
        },
    )
}
