//! `PUT /admin/rebate-rules` (admin): replaces the rebate rules. The body is
//! validated field by field (400 names the first bad one) and stored as the
//! next version; earlier versions are kept, and every ledger entry names the
//! version it was computed with. Orders paid from now on use the new rules.

use adapters::rebates::Rebates;
use domain::rebates::RebateRules;
use http_edge::http::{json, json_body};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(rebates: &Rebates, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    caller.require_admin()?;
    let rules: RebateRules = json_body(&req)?;
    let stored = rebates.replace_rules(rules, &caller.user_id).await?;
    Ok(json(StatusCode::OK, &stored))
}
