//! `GET /admin/refund-requests?status=&limit=&nextToken=` (admin): the
//! refund requests in one status, oldest first; `REQUESTED` (the default)
//! is the queue of requests to decide.

use adapters::refund_requests::{RefundRequests, STATUS_INDEX_KEY};
use domain::refund_requests::{RefundRequest, RefundRequestStatus};
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(requests: &RefundRequests, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let status = match query_param(&req, "status") {
        None => RefundRequestStatus::Requested,
        Some(text) => RefundRequestStatus::parse(&text).ok_or_else(|| {
            let statuses: Vec<&str> = RefundRequestStatus::ALL.map(|s| s.as_str()).to_vec();
            ApiError::invalid_field(
                "status",
                format!("must be one of {}, got {text:?}", statuses.join(", ")),
            )
        })?,
    };
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let start = query_param(&req, "nextToken")
        .map(|token| {
            page_token::decode_owned(&token, STATUS_INDEX_KEY, "requestStatus", status.as_str())
        })
        .transpose()?;
    let (items, last_key) = requests.list_by_status(status, limit, start).await?;
    Ok(json(
        StatusCode::OK,
        &Page::<RefundRequest>::new(items, last_key.as_ref()),
    ))
}
