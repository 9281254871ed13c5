//! `GET /me/rebates/withdrawals?limit=&nextToken=`: the caller's
//! withdrawals, newest first, with their status (and why a failed or
//! rejected one did not pay).

use adapters::withdrawals::{USER_INDEX_KEY, Withdrawals};
use domain::withdrawals::Withdrawal;
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(withdrawals: &Withdrawals, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    // A token of another user's list is refused, not followed.
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode_owned(&token, USER_INDEX_KEY, "userId", &caller.user_id))
        .transpose()?;
    let (items, last_key) = withdrawals
        .list_for_user(&caller.user_id, limit, start)
        .await?;
    Ok(json(
        StatusCode::OK,
        &Page::<Withdrawal>::new(items, last_key.as_ref()),
    ))
}
