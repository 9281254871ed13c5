//! `GET /admin/rebate-rules` (admin): the rules in force, with their version.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::http::json;
use shared::rebates::Rebates;
use shared::{ApiResult, Caller};

pub async fn handle(rebates: &Rebates, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let rules = rebates.current_rules().await?;
    Ok(json(StatusCode::OK, &rules))
}
