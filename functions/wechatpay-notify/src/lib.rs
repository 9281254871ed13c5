//! `POST /payments/notify/wechatpay`: WeChat Pay API v3's notification. No
//! JWT: the `Wechatpay-Signature` over `timestamp\nnonce\nbody\n` is checked
//! with the key `Wechatpay-Serial` names (a platform certificate or a WeChat
//! Pay public key), timestamps 300 s or more away refused, before the
//! resource is decrypted with the APIv3 key; then the merchant, the app and
//! the amount against the payment. Acknowledged with 204 and no body once
//! handled (a repeat too, which changes nothing); a failure answers 4xx/5xx
//! with WeChat Pay's `{"code":"FAIL","message":..}`, and WeChat Pay resends
//! (up to 15 times over about 24 h).

use adapters::payments::Payments;
use adapters::payments::wechatpay::{self, WechatPayProvider};
use domain::clock;
use domain::payments::VerifiedCallback;
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
    let (id, notification) = match callback {
        VerifiedCallback::Ignored {
            notification_id,
            why,
        } => {
            tracing::info!(
                notification_id,
                why,
                "WeChat Pay notification acknowledged without effect"
            );
            return Ok(());
        }
        VerifiedCallback::Payment {
            notification_id,
            notification,
        } => (notification_id, notification),
    };
    let payment_id = notification.payment_id.clone();
    // Unknown: not acknowledged, so WeChat Pay sends it again.
    let (payment, outcome) = payments
        .record_notification(wechatpay::NAME, notification, &correlation_id(req))
        .await?
        .ok_or_else(|| ApiError::payment_not_found(&payment_id))?;
    tracing::info!(
        notification_id = id,
        payment_id = %payment.payment_id,
        outcome = outcome.as_str(),
        "WeChat Pay notification recorded"
    );
    Ok(())
}
