//! Runs daily shortly after midnight UTC: writes the previous day's sales
//! report, one item per currency, so the stats route reads one item per
//! day instead of the day's aggregates. Running it again gives the same
//! report. An operator can roll up any day by invoking it with
//! `{"date": "YYYY-MM-DD"}`.

use adapters::sales::Sales;
use domain::clock;
use domain::sales::{DayReport, date_text, parse_date};
use serde::Serialize;
use serde_json::Value;
use time::Date;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What an invocation asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RollupRequest {
    /// The day to roll up; `None`: the day before now.
    pub date: Option<Date>,
}

/// Why a payload is not a roll-up request; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} {problem}; send {{}} (yesterday) or {{\"date\": \"YYYY-MM-DD\"}}")]
pub struct BadRollupRequest {
    pub field: String,
    pub problem: String,
}

fn bad(field: &str, problem: impl Into<String>) -> BadRollupRequest {
    BadRollupRequest {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

impl RollupRequest {
    /// The schedule's EventBridge event (the day before its `time`, so a
    /// late run still rolls up the right day), an empty payload
    /// (yesterday), or `{"date": "YYYY-MM-DD"}`. Anything else is refused:
    /// a typo must not roll up the wrong day and report success.
    pub fn from_payload(payload: &Value) -> Result<Self, BadRollupRequest> {
        let object = match payload {
            Value::Null => return Ok(Self::default()),
            Value::Object(object) => object,
            other => {
                return Err(bad(
                    "the payload",
                    format!("must be an object, got {other}"),
                ));
            }
        };
        if object.get("source").and_then(Value::as_str) == Some("aws.events") {
            let time = object.get("time").and_then(Value::as_str).unwrap_or("");
            let fired = OffsetDateTime::parse(time, &Rfc3339)
                .map_err(|_| bad("time", format!("must be an RFC 3339 time, got {time:?}")))?;
            return Ok(Self {
                date: fired.date().previous_day(),
            });
        }
        if let Some(unknown) = object.keys().find(|k| k.as_str() != "date") {
            return Err(bad(unknown, "is not a field of this request"));
        }
        match object.get("date") {
            None => Ok(Self::default()),
            Some(Value::String(text)) => parse_date(text)
                .map(|date| Self { date: Some(date) })
                .ok_or_else(|| {
                    bad(
                        "date",
                        format!("must be a date as YYYY-MM-DD from 1970, got {text:?}"),
                    )
                }),
            Some(other) => Err(bad(
                "date",
                format!("must be a string YYYY-MM-DD, got {other}"),
            )),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollupReport {
    pub date: String,
    pub reports: Vec<DayReport>,
}

pub async fn roll_up(
    sales: &Sales,
    request: RollupRequest,
) -> Result<RollupReport, lambda_runtime::Error> {
    let date = match request.date {
        Some(date) => date,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_schedule_an_empty_payload_or_a_date_are_requests() {
        let yesterday = RollupRequest::default();
        assert_eq!(
            RollupRequest::from_payload(&json!(null)),
            Ok(RollupRequest::default())
        );
        assert_eq!(
            RollupRequest::from_payload(&json!({})),
            Ok(RollupRequest::default())
        );
        let scheduled: Value =
            serde_json::from_str(include_str!("../../../events/roll-up-sales.json")).unwrap();
        assert_eq!(
            RollupRequest::from_payload(&scheduled).unwrap().date,
            parse_date("2026-11-21")
        );
        assert_eq!(
            RollupRequest::from_payload(&json!({"date": "2026-11-21"}))
                .unwrap()
                .date,
            parse_date("2026-11-21")
        );
        for (payload, field) in [
            (json!({"date": 20261121}), "date"),
            (json!({"Date": "2026-11-21"}), "Date"),
            (json!("2026-11-21"), "the payload"),
            (json!([1, 2]), "the payload"),
            (json!({"date": "-0001-01-01"}), "date"),
            (json!({"date": null}), "date"),
        ] {
            let error = RollupRequest::from_payload(&payload).unwrap_err();
            assert_eq!(error.field, field, "{payload}");
            assert_ne!(
                Ok(&yesterday),
                RollupRequest::from_payload(&payload).as_ref()
            );
        }
    }
}
