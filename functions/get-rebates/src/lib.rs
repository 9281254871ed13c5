//! `GET /me/rebates?limit=&nextToken=`: the caller's balance and ledger
//! entries, newest order first. Only ever the caller's own.

use adapters::rebates::{ENTRY_KEY, Rebates};
use domain::money::DEFAULT_CURRENCY;
use domain::rebates::{Balance, LedgerEntry};
use http_edge::http::{json, limit_param, query_param};
use http_edge::page_token;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;

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
    let (owner_attribute, owner) = Rebates::ledger_owner(&caller.user_id);
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode_owned(&token, ENTRY_KEY, owner_attribute, &owner))
        .transpose()?;
    let (entries, last_key) = rebates.entries(&caller.user_id, limit, start).await?;
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
            next_token: last_key.as_ref().map(page_token::encode),
        },
    ))
}
