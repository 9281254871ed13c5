//! `GET /admin/withdrawals?status=&limit=&nextToken=` (admin): the
//! withdrawals in one status, oldest first; `PENDING_REVIEW` (the default)
//! is the queue of withdrawals to decide.

use adapters::withdrawals::{STATUS_INDEX_KEY, Withdrawals};
use domain::withdrawals::{Withdrawal, WithdrawalStatus};
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(withdrawals: &Withdrawals, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let status = match query_param(&req, "status") {
        None => WithdrawalStatus::PendingReview,
        Some(text) => WithdrawalStatus::parse(&text).ok_or_else(|| {
            let statuses: Vec<&str> = WithdrawalStatus::ALL.map(|s| s.as_str()).to_vec();
            ApiError::invalid_field(
                "status",
                format!("must be one of {}, got {text:?}", statuses.join(", ")),
            )
        })?,
    };
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let start = query_param(&req, "nextToken")
        .map(|token| {
            page_token::decode_owned(
                &token,
                STATUS_INDEX_KEY,
                "withdrawalStatus",
                status.as_str(),
            )
        })
        .transpose()?;
    let (items, last_key) = withdrawals.list_by_status(status, limit, start).await?;
    Ok(json(
        StatusCode::OK,
        &Page::<Withdrawal>::new(items, last_key.as_ref()),
    ))
}
