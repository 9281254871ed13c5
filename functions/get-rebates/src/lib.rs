//! `GET /me/rebates?limit=&nextToken=`: the caller's balance and ledger
//! entries, newest order first. Only ever the caller's own.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;
use shared::db::encode_page_token;
use shared::http::{json, limit_param, query_param};
use shared::product::DEFAULT_CURRENCY;
use shared::rebates::{Balance, LedgerEntry, Rebates};
use shared::{ApiResult, Caller};

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RebateStatement {
    /// The balance in the shop's default currency (as before balances were
    /// kept per currency).
    balance: Balance,
    /// Every currency's balance: amounts in different currencies are
    /// never added up.
    balances: Vec<Balance>,
    entries: Vec<LedgerEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn handle(rebates: &Rebates, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let next_token = query_param(&req, "nextToken");
    let (entries, last_key) = rebates
        .entries(&caller.user_id, limit, next_token.as_deref())
        .await?;
    let balances = rebates.balances(&caller.user_id).await?;
    let balance = balances
        .iter()
        .find(|b| b.currency == DEFAULT_CURRENCY)
        .cloned()
        .unwrap_or_else(|| balances[0].clone());
    Ok(json(
        StatusCode::OK,
        &RebateStatement {
            balance,
            balances,
            entries,
            next_token: last_key.as_ref().map(encode_page_token),
        },
    ))
}
