//! `POST /payments/notify/alipay`: Alipay's asynchronous trade notification
//! (a form body). No JWT: Alipay's RSA2 signature is checked with Alipay's
//! public key before any field is believed, then the app and seller, then
//! the trade's amount against the payment. Answered with the literal body
//! `success` once handled (a repeat too, which changes nothing); anything
//! else makes Alipay send it again, which is what an answer of ours that
//! could not record it wants.

use adapters::payments::Payments;
use adapters::payments::alipay::{self, ACKNOWLEDGEMENT, AlipayProvider};
use domain::payments::VerifiedCallback;
use http_edge::http::{MAX_BODY_BYTES, correlation_id};
use http_edge::{ApiError, ApiResult};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};

pub async fn handle(payments: &Payments, alipay: &AlipayProvider, req: Request) -> ApiResult {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let (notify_id, notification) = match alipay.verify_callback(body).await? {
        VerifiedCallback::Ignored {
            notification_id,
            why,
        } => {
            tracing::info!(
                notification_id,
                why,
                "Alipay notification acknowledged without effect"
            );
            return Ok(acknowledged());
        }
        VerifiedCallback::Payment {
            notification_id,
            notification,
        } => (notification_id, notification),
    };
    let payment_id = notification.payment_id.clone();
    // Unknown: not acknowledged, so Alipay sends it again (a trade whose
    // payment is not written yet would then apply; one that never will stops
    // after Alipay's last try).
    let (payment, outcome) = payments
        .record_notification(alipay::NAME, notification, &correlation_id(&req))
        .await?
        .ok_or_else(|| ApiError::payment_not_found(&payment_id))?;
    tracing::info!(
        notify_id,
        payment_id = %payment.payment_id,
        outcome = outcome.as_str(),
        "Alipay notification recorded"
    );
    // Acknowledged whatever the outcome: a resend of a signed notification
    // that did not apply (a duplicate, another amount) would never apply.
    Ok(acknowledged())
}

fn acknowledged() -> Response<Body> {
    let mut response = Response::new(Body::Text(ACKNOWLEDGEMENT.to_owned()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
