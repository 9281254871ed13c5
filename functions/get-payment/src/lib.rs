//! `GET /payments/{paymentId}`: one of the caller's own payments; anyone
//! else's is answered exactly like a missing one.

use adapters::payments::Payments;
use domain::orders::plausible_order_id;
use http_edge::http::{json, path_param};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(payments: &Payments, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let payment_id = path_param(&req, "paymentId")?;
    // Payment ids are ULIDs like order ids.
    if !plausible_order_id(&payment_id) {
        return Err(ApiError::payment_not_found(&payment_id));
    }
    let payment = payments
        .get_owned(&payment_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::payment_not_found(&payment_id))?;
    Ok(json(StatusCode::OK, &payment))
}
