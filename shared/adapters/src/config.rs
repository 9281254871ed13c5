//! Settings read once per container from the environment the template sets.

/// A required setting is absent: the deployment is broken, not the request.
#[derive(thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingSetting(pub &'static str);

/// A function whose `main` returns a setting's error exits with
/// `Error: {:?}` in its log: the operator reading it should see the
/// sentence, not the type.
macro_rules! debug_as_sentence {
    ($($error:ty),*) => {$(
        impl std::fmt::Debug for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }
    )*};
}

debug_as_sentence!(MissingSetting, InvalidSetting);

pub fn required(name: &'static str) -> Result<String, MissingSetting> {
    required_from(&|n| std::env::var(n).ok(), name)
}

fn required_from(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, MissingSetting> {
    lookup(name)
        .filter(|v| !v.is_empty())
        .ok_or(MissingSetting(name))
}

/// Table names, as the template passes them: each function gets only the
/// tables its IAM policy names (`tests/template.rs` checks both agree).
/// A table a function was not given reads as a name DynamoDB refuses, which
/// names the missing variable in the error and the log
/// (`<ORDERS_TABLE not set>`): functions start without settings they never
/// use, and a wiring mistake still fails loudly at its first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub products: String,
    /// Shards 1…N−1 of hot products' stock (see `stock_shards`).
    pub stock_shards: String,
    pub orders: String,
    pub idempotency: String,
    /// The transactional outbox (see `events`).
    pub events: String,
    pub payments: String,
    /// Every provider callback, for audit.
    pub payment_callbacks: String,
    /// Consumers' processed-event markers.
    pub processed_events: String,
    /// The current rebate rules and every earlier version.
    pub rebate_rules: String,
    /// Rebate ledger entries, balances and monthly totals per user.
    pub rebates: String,
    /// Daily sales aggregates and their rollup reports.
    pub sales_stats: String,
    /// Every user's in-app inbox.
    pub notifications: String,
    /// Users' notification preferences.
    pub preferences: String,
    /// Per-user token buckets (see `ratelimit`).
    pub rate_limits: String,
    /// After-sales refund requests (see `refund_requests`).
    pub refund_requests: String,
    /// Withdrawals of rebate balances (see `withdrawals`).
    pub withdrawals: String,
}

impl Tables {
    pub fn from_env() -> Self {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the names through `lookup`, which tests build from the
    /// template's own environment wiring.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let table = |name: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| format!("<{name} not set>"))
        };
        Self {
            products: table("PRODUCTS_TABLE"),
            stock_shards: table("STOCK_SHARDS_TABLE"),
            orders: table("ORDERS_TABLE"),
            idempotency: table("IDEMPOTENCY_TABLE"),
            events: table("EVENTS_TABLE"),
            payments: table("PAYMENTS_TABLE"),
            payment_callbacks: table("PAYMENT_CALLBACKS_TABLE"),
            processed_events: table("PROCESSED_EVENTS_TABLE"),
            rebate_rules: table("REBATE_RULES_TABLE"),
            rebates: table("REBATES_TABLE"),
            sales_stats: table("SALES_STATS_TABLE"),
            notifications: table("NOTIFICATIONS_TABLE"),
            preferences: table("PREFERENCES_TABLE"),
            rate_limits: table("RATE_LIMITS_TABLE"),
            refund_requests: table("REFUND_REQUESTS_TABLE"),
            withdrawals: table("WITHDRAWALS_TABLE"),
        }
    }
}

/// How long an unpaid order holds its stock (`PAYMENT_WINDOW_SECONDS`,
/// default 15 minutes, 10 seconds to 1 day; the template's parameter has the
/// same bounds).
pub fn payment_window() -> Result<std::time::Duration, InvalidSetting> {
    whole_number("PAYMENT_WINDOW_SECONDS", 900, 10..=86_400).map(std::time::Duration::from_secs)
}

/// A whole-number setting (seconds, days, fen): `default` when unset,
/// refused outside `bounds` (the template's parameter has the same bounds).
fn whole_number(
    name: &'static str,
    default: u64,
    bounds: std::ops::RangeInclusive<u64>,
) -> Result<u64, InvalidSetting> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|s| bounds.contains(s))
            .ok_or(InvalidSetting(name, raw)),
    }
}

/// The withdrawal rules (`WITHDRAWAL_MINIMUM`, `WITHDRAWAL_DAILY_CAP`,
/// `WITHDRAWAL_REVIEW_THRESHOLD`, in fen; the template's parameters have
/// the same defaults and bounds).
pub fn withdrawal_policy() -> Result<domain::withdrawals::WithdrawalPolicy, InvalidSetting> {
    use domain::withdrawals as w;
    let fen = |name, default: i64| {
        whole_number(name, default as u64, 1..=domain::money::MAX_AMOUNT as u64).map(|v| v as i64)
    };
    Ok(w::WithdrawalPolicy {
        minimum: fen("WITHDRAWAL_MINIMUM", w::DEFAULT_MINIMUM)?,
        daily_cap: fen("WITHDRAWAL_DAILY_CAP", w::DEFAULT_DAILY_CAP)?,
        review_threshold: fen("WITHDRAWAL_REVIEW_THRESHOLD", w::DEFAULT_REVIEW_THRESHOLD)?,
    })
}

/// How long after an order's payment window closes a payment's success
/// still pays it (`LATE_PAYMENT_GRACE_SECONDS`, default 60 s, 0 to 1 hour;
/// the template's parameter has the same bounds). Expiry waits as long.
pub fn late_payment_grace() -> Result<time::Duration, InvalidSetting> {
    whole_number("LATE_PAYMENT_GRACE_SECONDS", 60, 0..=3600)
        .map(|s| time::Duration::seconds(s as i64))
}

/// How long after shipping an order's receipt is confirmed for its buyer
/// (`AUTO_CONFIRM_DAYS`, the template's `AutoConfirmDays`; default 10, 0 to
/// 90; 0 confirms at the sweep's next run).
pub fn auto_confirm_after() -> Result<time::Duration, InvalidSetting> {
    whole_number("AUTO_CONFIRM_DAYS", 10, 0..=90).map(|days| time::Duration::days(days as i64))
}

/// How long after completion a buyer may still ask for a refund
/// (`AFTER_SALES_DAYS`, the template's `AfterSalesDays`; default 7, 0 to
/// 90). Fractions of a day are allowed so that a test stack can close the
/// window within a minute; whole seconds are kept.
pub fn after_sales() -> Result<time::Duration, InvalidSetting> {
    const NAME: &str = "AFTER_SALES_DAYS";
    match std::env::var(NAME) {
        Err(_) => Ok(domain::refund_requests::DEFAULT_AFTER_SALES),
        Ok(raw) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|days| (0.0..=90.0).contains(days))
            .map(|days| time::Duration::seconds((days * 86_400.0).round() as i64))
            .ok_or(InvalidSetting(NAME, raw)),
    }
}

/// How long after its creation a real provider's payment that is still
/// pending is first asked about (`RECONCILE_AFTER_SECONDS`, default 120 s,
/// 1 s to 1 day): Alipay and WeChat Pay lose and delay notifications.
pub fn reconcile_after() -> Result<time::Duration, InvalidSetting> {
    whole_number("RECONCILE_AFTER_SECONDS", 120, 1..=86_400)
        .map(|s| time::Duration::seconds(s as i64))
}

/// The calling codes SMS may go to (`SMS_COUNTRY_CODES`, default `86`).
pub fn sms_countries() -> Result<domain::notifications::verification::SmsCountries, InvalidSetting>
{
    let raw = std::env::var("SMS_COUNTRY_CODES").unwrap_or_else(|_| "86".into());
    domain::notifications::verification::SmsCountries::parse(&raw)
        .ok_or(InvalidSetting("SMS_COUNTRY_CODES", raw))
}

/// A user's daily cap on SMS (`SMS_DAILY_CAP`, default 10) or e-mails
/// (`EMAIL_DAILY_CAP`, default 20), codes included; 1 to 1000.
pub fn daily_cap(
    contact: domain::notifications::verification::Contact,
) -> Result<u32, InvalidSetting> {
    use domain::notifications::verification::Contact;
    let (name, default) = match contact {
        Contact::Sms => ("SMS_DAILY_CAP", 10),
        Contact::Email => ("EMAIL_DAILY_CAP", 20),
    };
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or(InvalidSetting(name, raw)),
    }
}

#[derive(thiserror::Error)]
#[error("environment variable {0} has an invalid value {1:?}")]
pub struct InvalidSetting(pub &'static str, pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_logs_the_sentence_not_the_type() {
        // What `main` returning `Err` prints: `Error: {:?}` of the boxed error.
        let missing: lambda_runtime::Error = MissingSetting("ORDERS_TABLE").into();
        assert_eq!(
            format!("{missing:?}"),
            "environment variable ORDERS_TABLE is not set"
        );
        let invalid: lambda_runtime::Error =
            InvalidSetting("PAYMENT_WINDOW_SECONDS", "5".into()).into();
        assert_eq!(
            format!("{invalid:?}"),
            r#"environment variable PAYMENT_WINDOW_SECONDS has an invalid value "5""#
        );
    }
}
