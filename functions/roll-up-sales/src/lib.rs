//! Runs daily shortly after midnight UTC: writes the previous day's sales
//! report, one item per currency, so the stats route reads one item per
//! day instead of the day's aggregates. Running it again gives the same
//! report. An operator can roll up any day by invoking it with
//! `{"date": "YYYY-MM-DD"}`.

use serde::{Deserialize, Serialize};
use shared::clock;
use shared::sales::{DayReport, Sales, date_text, parse_date};

#[derive(Debug, Default, Deserialize)]
pub struct RollupRequest {
    /// The day to roll up; the scheduled event has none (yesterday).
    #[serde(default)]
    pub date: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollupReport {
    pub date: String,
    pub reports: Vec<DayReport>,
}

#[derive(Debug, thiserror::Error)]
#[error("date must be YYYY-MM-DD, got {0:?}")]
pub struct BadDate(String);

pub async fn roll_up(
    sales: &Sales,
    request: RollupRequest,
) -> Result<RollupReport, lambda_runtime::Error> {
    let date = match request.date {
        Some(text) => parse_date(&text).ok_or(BadDate(text))?,
        None => clock::now()
            .date()
            .previous_day()
            .unwrap_or(clock::now().date()),
    };
    let mut reports = Vec::new();
    for currency in sales.currencies(date).await? {
        reports.push(sales.roll_up(date, &currency).await?);
    }
    tracing::info!(date = %date_text(date), currencies = reports.len(), "sales rolled up");
    Ok(RollupReport {
        date: date_text(date),
        reports,
    })
}
