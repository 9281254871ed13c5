//! `GET /orders/{orderId}/refund-requests?limit=&nextToken=`: the refund
//! requests of one of the caller's orders, oldest first, with their status
//! and decision. Another user's order is 404, as if it did not exist.

use adapters::orders::Orders;
use adapters::refund_requests::{ORDER_INDEX_KEY, RefundRequests};
use domain::refund_requests::RefundRequest;
use http_edge::ApiResult;
use http_edge::http::{json, limit_param, query_param};
use http_edge::orders::callers_order;
use http_edge::page_token::{self, Page};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(orders: &Orders, requests: &RefundRequests, req: Request) -> ApiResult {
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let order = callers_order(orders, &req).await?;
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode_owned(&token, ORDER_INDEX_KEY, "orderId", &order.order_id))
        .transpose()?;
    let (items, last_key) = requests
        .list_for_order(&order.order_id, limit, start)
        .await?;
    Ok(json(
        StatusCode::OK,
        &Page::<RefundRequest>::new(items, last_key.as_ref()),
    ))
}
