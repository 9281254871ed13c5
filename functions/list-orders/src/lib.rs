//! `GET /orders?limit=&nextToken=`: the caller's orders, newest first.

use adapters::orders::{Orders, USER_INDEX_KEY};
use domain::orders::Order;
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode_owned(&token, USER_INDEX_KEY, "userId", &caller.user_id))
        .transpose()?;
    let (items, last_key) = orders.list_for_user(&caller.user_id, limit, start).await?;
    Ok(json(
        StatusCode::OK,
        &Page::<Order>::new(items, last_key.as_ref()),
    ))
}
