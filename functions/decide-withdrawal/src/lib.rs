//! `POST /admin/withdrawals/{withdrawalId}/decision` (admin)
//! `{decision: APPROVE|REJECT, reason}` on a withdrawal `PENDING_REVIEW`:
//!
//! - `APPROVE` moves it to `PROCESSING` with its `WithdrawalApproved`
//!   event: the payout consumer pays it.
//! - `REJECT` (a reason is required: the shopper reads it) moves it to
//!   `REJECTED` and puts the amount back in the available balance, in one
//!   transaction.
//!
//! The same decision again answers 200 with the withdrawal as it is; the
//! other decision on a decided one is 409 `WITHDRAWAL_DECIDED`.

use adapters::withdrawals::Withdrawals;
use domain::decisions::DecisionBody;
use domain::ids::plausible_id;
use domain::withdrawals::WithdrawalError;
use http_edge::http::{json, json_body, path_param};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(withdrawals: &Withdrawals, req: Request) -> ApiResult {
    let admin = Caller::from_request(&req)?;
    admin.require_admin()?;
    let id = path_param(&req, "withdrawalId")?;
    if !plausible_id(&id) {
        return Err(WithdrawalError::NotFound(id).into());
    }
    let body: DecisionBody = json_body(&req)?;
    let reason = body.validate()?;
    let decided = withdrawals
        .decide(&id, body.decision, reason, &admin.user_id)
        .await?;
    Ok(json(StatusCode::OK, &decided))
}
