//! `GET /admin/stats/sales?from=YYYY-MM-DD&to=YYYY-MM-DD[&currency=CNY]`
//! (admin): per-day totals and the top 10 products by revenue over at most
//! 366 days, from each day's rollup report where there is one.

use adapters::sales::Sales;
use domain::money::{DEFAULT_CURRENCY, validate_currency};
use domain::sales::{MAX_RANGE_DAYS, parse_date};
use http_edge::http::{json, query_param};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use time::Date;

fn date_param(req: &Request, name: &str) -> Result<Date, ApiError> {
    let raw = query_param(req, name)
        .ok_or_else(|| ApiError::invalid_field(name, "is required (YYYY-MM-DD)"))?;
    parse_date(&raw).ok_or_else(|| {
        ApiError::invalid_field(name, format!("must be a date as YYYY-MM-DD, got {raw:?}"))
    })
}

pub async fn handle(sales: &Sales, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let from = date_param(&req, "from")?;
    let to = date_param(&req, "to")?;
    if to < from {
        return Err(ApiError::invalid_field("to", "must not be before from"));
    }
    let days = (to - from).whole_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(ApiError::invalid_field(
            "to",
            format!("the range is {days} days; at most {MAX_RANGE_DAYS} are allowed"),
        ));
    }
    let currency = query_param(&req, "currency").unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
    validate_currency(&currency)?;
    let stats = sales.stats(from, to, &currency).await?;
    Ok(json(StatusCode::OK, &stats))
}
