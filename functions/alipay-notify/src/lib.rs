//! `POST /payments/notify/alipay`: Alipay's asynchronous trade notification
//! (a form body). No JWT: Alipay's RSA2 signature is checked with Alipay's
//! public key before any field is believed, then the app and seller, then
//! the trade's amount against the payment. Answered with the literal body
//! `success` once handled (a repeat too, which changes nothing); anything
//! else makes Alipay send it again, which is what an answer of ours that
//! could not record it wants.

use adapters::payments::alipay::{self, ACKNOWLEDGEMENT, AlipayProvider};
use adapters::payments::{NotificationOutcome, Payments};
use http_edge::http::{MAX_BODY_BYTES, correlation_id};
use http_edge::{ApiError, ApiResult};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};

pub async fn handle(payments: &Payments, alipay: &AlipayProvider, req: Request) -> ApiResult {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let callback = alipay.verify_callback(body).await?;
    // Unknown: not acknowledged, so the provider sends it again (it may
    // merely have overtaken our write; one that never applies stops after
    // the provider's last try). Every other outcome is acknowledged: a
    // resend of a signed notification that did not apply never would.
    match payments
        .apply_notification(alipay::NAME, callback, &correlation_id(&req))
        .await?
    {
        NotificationOutcome::UnknownPayment(id) => Err(ApiError::payment_not_found(&id)),
        NotificationOutcome::Ignored | NotificationOutcome::Recorded(_) => Ok(acknowledged()),
    }
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
