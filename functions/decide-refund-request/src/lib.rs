//! `POST /admin/refund-requests/{refundRequestId}/decision` (admin)
//! `{decision: APPROVE|REJECT, reason}`:
//!
//! - `APPROVE` refunds the request's lines through the payment's provider
//!   with the request's id as the provider's refund id, then moves the
//!   request to `REFUNDED` and the order to `PARTIALLY_REFUNDED` or
//!   `REFUNDED`, returned units back in stock, in one transaction. A
//!   provider outage answers 503 and leaves the request `APPROVED`:
//!   approving again finishes it, and refunds once.
//! - `REJECT` (a reason is required: the buyer reads it) releases the
//!   lines' claims, so the buyer may ask again.
//!
//! The same decision again answers 200 with the request as it is; the
//! other decision on a decided request is 409 `REFUND_REQUEST_DECIDED`.

use adapters::payments::Payments;
use adapters::refund_requests::RefundRequests;
use domain::ids::plausible_id;
use domain::payments::PaymentProvider;
use domain::refund_requests::{Decision, DecisionBody, RefundRequestError};
use http_edge::http::{correlation_id, json, json_body, path_param};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(
    requests: &RefundRequests,
    payments: &Payments,
    provider: &impl PaymentProvider,
    req: Request,
) -> ApiResult {
    let admin = Caller::from_request(&req)?;
    admin.require_admin()?;
    let id = path_param(&req, "refundRequestId")?;
    if !plausible_id(&id) {
        return Err(RefundRequestError::NotFound(id).into());
    }
    let body: DecisionBody = json_body(&req)?;
    let reason = body.validate()?;
    let decided = match body.decision {
        Decision::Approve => {
            requests
                .approve(
                    &id,
                    &admin.user_id,
                    reason.as_deref(),
                    payments,
                    provider,
                    &correlation_id(&req),
                )
                .await?
        }
        Decision::Reject => {
            let reason = reason.unwrap_or_default();
            requests.reject(&id, &admin.user_id, &reason).await?
        }
    };
    Ok(json(StatusCode::OK, &decided))
}
