//! `POST /me/rebates/withdrawals` (`Idempotency-Key`)
//! `{amount, channel: ALIPAY|WECHAT_PAY, account, accountName}`: takes
//! `amount` fen out of the caller's available rebate balance into a
//! withdrawal, in the transaction that creates it, so racing requests never
//! withdraw more than the balance. 201 with the withdrawal: `PROCESSING`
//! (the payout is on its way) or, above the review threshold,
//! `PENDING_REVIEW`. One withdrawal in flight per user; at most the daily
//! cap a UTC day.

use adapters::idempotency::fingerprint;
use adapters::withdrawals::{Requested, Withdrawals};
use domain::withdrawals::WithdrawalBody;
use http_edge::http::{json, json_body};
use http_edge::idempotency::replayed;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(withdrawals: &Withdrawals, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let key = http_edge::idempotency::key(&req, &caller.user_id, "requestWithdrawal")?;
    let body: WithdrawalBody = json_body(&req)?;
    let idempotency = key.map(|key| (key, fingerprint(&body)));
    // A retry is answered as the original was, whatever the balance became.
    if let Some((key, print)) = &idempotency
        && let Some(original) = withdrawals.recorded_answer(key, print).await?
    {
        return Ok(replayed(original));
    }
    Ok(
        match withdrawals
            .request(&caller.user_id, &body, idempotency)
            .await?
        {
            Requested::Created(withdrawal) => json(StatusCode::CREATED, &withdrawal),
            Requested::Replayed(original) => replayed(original),
        },
    )
}
