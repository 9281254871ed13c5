//! `GET /orders/{orderId}`: one of the caller's own orders; anyone else's
//! is answered exactly like a missing one.

use adapters::orders::Orders;
use http_edge::ApiResult;
use http_edge::http::json;
use http_edge::orders::callers_order;
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    let order = callers_order(orders, &req).await?;
    Ok(json(StatusCode::OK, &order))
}
