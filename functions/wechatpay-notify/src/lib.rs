//! `POST /payments/notify/wechatpay`: WeChat Pay API v3's notification. No
//! JWT: the `Wechatpay-Signature` over `timestamp\nnonce\nbody\n` is checked
//! with the key `Wechatpay-Serial` names (a platform certificate or a WeChat
//! Pay public key), timestamps 300 s or more away refused, before the
//! resource is decrypted with the APIv3 key; then the merchant, the app and
//! the amount against the payment. Acknowledged with 204 and no body once
//! handled (a repeat too, which changes nothing); a failure answers 4xx/5xx
//! with WeChat Pay's `{"code":"FAIL","message":..}`, and WeChat Pay resends
//! (up to 15 times over about 24 h).

use adapters::payments::wechatpay::{self, WechatPayProvider};
use adapters::payments::{NotificationOutcome, Payments};
use domain::clock;
use http_edge::http::{MAX_BODY_BYTES, correlation_id, json};
use http_edge::{ApiError, ApiResult};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

pub async fn handle(payments: &Payments, wechatpay: &WechatPayProvider, req: Request) -> ApiResult {
    match notification(payments, wechatpay, &req).await {
        Ok(()) => {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        // WeChat Pay reads only the status; its own shape keeps its
        // dashboards and our logs saying the same thing.
        Err(err) => Ok(json(
            err.status,
            &json!({"code": "FAIL", "message": err.message}),
        )),
    }
}

async fn notification(
    payments: &Payments,
    wechatpay: &WechatPayProvider,
    req: &Request,
) -> Result<(), ApiError> {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let callback = wechatpay
        .verify_callback(header, body, clock::now().unix_timestamp())
        .await?;

    // Unknown: not acknowledged, so the provider sends it again (it may
    // merely have overtaken our write; one that never applies stops after
    // the provider's last try). Every other outcome is acknowledged: a
    // resend of a signed notification that did not apply never would.
    match payments
        .apply_notification(wechatpay::NAME, callback, &correlation_id(req))
        .await?
    {
        NotificationOutcome::UnknownPayment(id) => Err(ApiError::payment_not_found(&id)),
        NotificationOutcome::Ignored | NotificationOutcome::Recorded(_) => Ok(()),
    }
}
