//! `GET /orders/{orderId}`: one of the caller's own orders; anyone else's
//! is answered exactly like a missing one.

use adapters::orders::Orders;
use domain::orders::plausible_order_id;
use http_edge::http::{json, path_param};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let order_id = path_param(&req, "orderId")?;
    if !plausible_order_id(&order_id) {
        return Err(ApiError::order_not_found(&order_id));
    }
    let order = orders
        .get_owned(&order_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::order_not_found(&order_id))?;
    Ok(json(StatusCode::OK, &order))
}
