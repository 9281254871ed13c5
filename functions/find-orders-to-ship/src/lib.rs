//! `GET /admin/orders/to-ship?limit=&nextToken=` (admin): the shop's queue
//! of orders to ship — paid, not shipped, no refund under way — oldest
//! payment first.

use adapters::orders::{Orders, TO_SHIP_CURSOR};
use domain::orders::Order;
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = query_param(&req, "nextToken")
        .map(|token| page_token::decode(&token, TO_SHIP_CURSOR))
        .transpose()?;
    let (items, next) = orders.to_ship(limit, after).await?;
    Ok(json(
        StatusCode::OK,
        &Page::<Order>::new(items, next.as_ref()),
    ))
}
