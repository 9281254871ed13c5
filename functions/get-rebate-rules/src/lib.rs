//! `GET /admin/rebate-rules` (admin): the rules in force, with their version.

use adapters::rebates::Rebates;
use http_edge::http::json;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(rebates: &Rebates, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let rules = rebates.current_rules().await?;
    Ok(json(StatusCode::OK, &rules))
}
