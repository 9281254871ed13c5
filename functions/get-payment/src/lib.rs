//! `GET /payments/{paymentId}`: one of the caller's own payments; anyone
//! else's is answered exactly like a missing one.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::http::{json, path_param};
use shared::order::plausible_order_id;
use shared::payment::payment_not_found;
use shared::payments::Payments;
use shared::{ApiResult, Caller};

pub async fn handle(payments: &Payments, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let payment_id = path_param(&req, "paymentId")?;
    // Payment ids are ULIDs like order ids.
    if !plausible_order_id(&payment_id) {
        return Err(payment_not_found(&payment_id));
    }
    let payment = payments
        .get_owned(&payment_id, &caller.user_id)
        .await?
        .ok_or_else(|| payment_not_found(&payment_id))?;
    Ok(json(StatusCode::OK, &payment))
}
