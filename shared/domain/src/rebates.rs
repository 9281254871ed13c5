//! Rebates (cashback): the rules document and its evaluation, and the
//! ledger's entries and balances.
//!
//! Evaluation is a pure function of (order lines with categories, paid
//! time, the user's rebates so far this calendar month, rules), so it is
//! tested exhaustively here and the consumer only does I/O around it.
//!
//! Rules, in order:
//! 1. Orders in another currency than the rules', or below
//!    `minOrderAmount`, earn nothing.
//! 2. Each line's rate (basis points) is its product's override, else its
//!    category's rate, else `defaultRateBps`.
//! 3. Campaigns active at the paid time apply to the lines they select
//!    (by product or category; none listed = every line). Active means
//!    `startsAt <= paidAt < endsAt`: the start is inclusive, the end
//!    exclusive. The highest `REPLACE` campaign replaces the rate; every
//!    `EXTRA` campaign adds to it.
//! 4. Each line earns `lineAmount × rate / 10000`, rounded **down** to a
//!    minor unit; the order earns the sum.
//! 5. The order's rebate is capped by `maxPerOrder`, then by what is left of
//!    `maxPerUserPerMonth` this calendar month (UTC). The per-line breakdown
//!    shows the uncapped figures and `cappedBy` says which cap applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::FieldError;
use crate::money::MAX_AMOUNT;
use crate::orders::{Order, OrderStatus};
use crate::refund_requests::RefundLine;

pub const MAX_RATE_BPS: u32 = 10_000;
/// Campaigns a rule set may hold. Each credit lists, per line, the
/// campaigns that shaped it: 20 lines × 50 campaigns × 64-character ids
/// keeps a `RebateCredited` event near 70 KB, far inside what SNS takes
/// (issue 28.1: 370 campaigns made one of 274 KB).
pub const MAX_CAMPAIGNS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignKind {
    /// Adds its rate to the line's rate.
    Extra,
    /// Replaces the line's rate.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Campaign {
    pub campaign_id: String,
    pub kind: CampaignKind,
    pub rate_bps: u32,
    /// RFC 3339; inclusive.
    pub starts_at: String,
    /// RFC 3339; exclusive.
    pub ends_at: String,
    /// Categories it applies to; with `products` both empty, every line.
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub products: Vec<String>,
}

/// The rules document (`PUT /admin/rebate-rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RebateRules {
    /// Set by the server on every replacement; ignored in requests.
    #[serde(default)]
    pub version: u32,
    #[serde(default = "crate::money::default_currency")]
    pub currency: String,
    /// Required, unlike the rest: `{}` (a body sent by mistake) would
    /// otherwise switch rebates off; switching them off takes an explicit 0.
    pub default_rate_bps: u32,
    #[serde(default)]
    pub category_rates_bps: BTreeMap<String, u32>,
    #[serde(default)]
    pub product_rates_bps: BTreeMap<String, u32>,
    #[serde(default)]
    pub campaigns: Vec<Campaign>,
    #[serde(default)]
    pub min_order_amount: i64,
    #[serde(default)]
    pub max_per_order: Option<i64>,
    #[serde(default)]
    pub max_per_user_per_month: Option<i64>,
}

/// One order line as evaluation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebateLine {
    pub product_id: String,
    pub category: String,
    pub line_amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cap {
    PerOrder,
    PerUserPerMonth,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineRebate {
    pub product_id: String,
    pub rate_bps: u32,
    pub amount: i64,
    /// Campaigns that shaped this line's rate.
    pub campaigns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// What the order earns, after caps.
    pub amount: i64,
    pub lines: Vec<LineRebate>,
    pub capped_by: Option<Cap>,
    pub rules_version: u32,
}

fn parse_time(field: &str, value: &str) -> Result<OffsetDateTime, FieldError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| FieldError::new(field, format!("must be an RFC 3339 time, got {value:?}")))
}

fn check_rate(field: &str, rate: u32) -> Result<(), FieldError> {
    if rate <= MAX_RATE_BPS {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 0 to {MAX_RATE_BPS} basis points, got {rate}"),
        ))
    }
}

fn check_amount(field: &str, amount: i64) -> Result<(), FieldError> {
    if (0..=MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 0 to {MAX_AMOUNT} minor units, got {amount}"),
        ))
    }
}

fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if (1..=64).contains(&name.len()) && name.chars().all(|c| !c.is_control()) {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be 1 to 64 characters"))
    }
}

impl RebateRules {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), FieldError> {
        crate::money::validate_currency(&self.currency)?;
        check_rate("defaultRateBps", self.default_rate_bps)?;
        for (category, rate) in &self.category_rates_bps {
            check_name("categoryRatesBps", category)?;
            check_rate(&format!("categoryRatesBps.{category}"), *rate)?;
        }
        for (product, rate) in &self.product_rates_bps {
            crate::catalog::validate_product_id(product).map_err(|_| {
                FieldError::new(
                    "productRatesBps",
                    format!("{product:?} is not a product id"),
                )
            })?;
            check_rate(&format!("productRatesBps.{product}"), *rate)?;
        }
        check_amount("minOrderAmount", self.min_order_amount)?;
        if let Some(cap) = self.max_per_order {
            check_amount("maxPerOrder", cap)?;
        }
        if let Some(cap) = self.max_per_user_per_month {
            check_amount("maxPerUserPerMonth", cap)?;
        }
        if self.campaigns.len() > MAX_CAMPAIGNS {
            return Err(FieldError::new(
                "campaigns",
                format!(
                    "holds {} campaigns; at most {MAX_CAMPAIGNS} are allowed",
                    self.campaigns.len()
                ),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, campaign) in self.campaigns.iter().enumerate() {
            let field = |name: &str| format!("campaigns[{i}].{name}");
            check_name(&field("campaignId"), &campaign.campaign_id)?;
            if !ids.insert(campaign.campaign_id.as_str()) {
                return Err(FieldError::new(
                    field("campaignId"),
                    "is used by another campaign",
                ));
            }
            check_rate(&field("rateBps"), campaign.rate_bps)?;
            let starts = parse_time(&field("startsAt"), &campaign.starts_at)?;
            let ends = parse_time(&field("endsAt"), &campaign.ends_at)?;
            if ends <= starts {
                return Err(FieldError::new(field("endsAt"), "must be after startsAt"));
            }
        }
        Ok(())
    }

    fn base_rate(&self, line: &RebateLine) -> u32 {
        self.product_rates_bps
            .get(&line.product_id)
            .or_else(|| self.category_rates_bps.get(&line.category))
            .copied()
            .unwrap_or(self.default_rate_bps)
    }
}

impl Campaign {
    fn is_active(&self, at: OffsetDateTime) -> bool {
        // Validated rules always parse; an unparsable time never matches.
        match (
            OffsetDateTime::parse(&self.starts_at, &Rfc3339),
            OffsetDateTime::parse(&self.ends_at, &Rfc3339),
        ) {
            (Ok(starts), Ok(ends)) => starts <= at && at < ends,
            _ => false,
        }
    }

    fn selects(&self, line: &RebateLine) -> bool {
        (self.categories.is_empty() && self.products.is_empty())
            || self.categories.contains(&line.category)
            || self.products.contains(&line.product_id)
    }
}

/// The first instant of `at`'s calendar month, UTC.
pub fn month_start(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_day(1)
        .and_then(|d| d.replace_time(time::Time::MIDNIGHT).replace_nanosecond(0))
        .unwrap_or(at)
}

/// What an order paid at `paid_at` earns under `rules`.
pub fn evaluate(
    lines: &[RebateLine],
    currency: &str,
    paid_at: OffsetDateTime,
    month_total_so_far: i64,
    rules: &RebateRules,
) -> Evaluation {
    let nothing = |lines: Vec<LineRebate>| Evaluation {
        amount: 0,
        lines,
        capped_by: None,
        rules_version: rules.version,
    };
    let order_amount: i64 = lines.iter().map(|l| l.line_amount).sum();
    if currency != rules.currency || order_amount < rules.min_order_amount {
        return nothing(Vec::new());
    }
    let active: Vec<&Campaign> = rules
        .campaigns
        .iter()
        .filter(|c| c.is_active(paid_at))
        .collect();
    let mut breakdown = Vec::with_capacity(lines.len());
    for line in lines {
        let mut rate = rules.base_rate(line);
        let mut applied = Vec::new();
        let best_replace = active
            .iter()
            .filter(|c| c.kind == CampaignKind::Replace && c.selects(line))
            .max_by_key(|c| c.rate_bps);
        if let Some(campaign) = best_replace {
            rate = campaign.rate_bps;
            applied.push(campaign.campaign_id.clone());
        }
        for campaign in active
            .iter()
            .filter(|c| c.kind == CampaignKind::Extra && c.selects(line))
        {
            rate = rate.saturating_add(campaign.rate_bps);
            applied.push(campaign.campaign_id.clone());
        }
        let rate = rate.min(MAX_RATE_BPS);
        // i128: a line amount times 10,000 can exceed i64.
        let amount =
            (i128::from(line.line_amount) * i128::from(rate) / i128::from(MAX_RATE_BPS)) as i64;
        breakdown.push(LineRebate {
            product_id: line.product_id.clone(),
            rate_bps: rate,
            amount,
            campaigns: applied,
        });
    }
    let uncapped: i64 = breakdown.iter().map(|l| l.amount).sum();
    let mut amount = uncapped;
    let mut capped_by = None;
    if let Some(cap) = rules.max_per_order
        && amount > cap
    {
        amount = cap;
        capped_by = Some(Cap::PerOrder);
    }
    if let Some(cap) = rules.max_per_user_per_month {
        let left = (cap - month_total_so_far).max(0);
        if amount > left {
            amount = left;
            capped_by = Some(Cap::PerUserPerMonth);
        }
    }
    Evaluation {
        amount,
        lines: breakdown,
        capped_by,
        rules_version: rules.version,
    }
}

// ------------------------------------------------------------ ledger

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryKind {
    /// What an order earned.
    Credit,
    /// Takes back an `AVAILABLE` credit whose order was refunded.
    Clawback,
    /// Minus what a withdrawal takes out of the available balance;
    /// `REVERSED` when the withdrawal was rejected or its payout failed.
    Withdrawal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryStatus {
    /// Counts in `balance.pending` until its order is completed and the
    /// after-sales window has closed (`available_at`, set at completion).
    Pending,
    /// Counts in `balance.available`.
    Available,
    /// Counts nowhere: its order was refunded or cancelled while pending.
    Reversed,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Pending => "PENDING",
            EntryStatus::Available => "AVAILABLE",
            EntryStatus::Reversed => "REVERSED",
        }
    }
}

/// One ledger entry, as stored and as `GET /me/rebates` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub entry_id: String,
    pub user_id: String,
    /// The order a credit, clawback or reduction is of (empty for a
    /// withdrawal's entry).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order_id: String,
    /// The withdrawal a `WITHDRAWAL` entry is of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawal_id: Option<String>,
    pub kind: EntryKind,
    pub status: EntryStatus,
    /// Minor units; negative for a clawback.
    pub amount: i64,
    pub currency: String,
    pub rules_version: u32,
    /// Per-line figures before caps (empty for a clawback).
    #[serde(default)]
    pub lines: Vec<LineRebate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<Cap>,
    /// The calendar month (UTC, `YYYY-MM`) whose cap the entry counts in.
    pub month: String,
    pub created_at: String,
    pub updated_at: String,
    /// When a pending entry becomes available: set when its order is
    /// completed (the after-sales window's close), absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<String>,
    /// When its order was refunded or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversed_at: Option<String>,
    /// A credit's: what refunds of some of its order's lines took back so
    /// far (each by an entry of its own; this sum is what the last lines'
    /// refund leaves).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reversed_amount: i64,
}

fn is_zero(amount: &i64) -> bool {
    *amount == 0
}

/// What refunding `lines` of `order` (the order after the refund) takes
/// back of `credit`: each line's rebate as the credit computed it (under
/// its rules version, before caps) for the units refunded, scaled by what
/// the caps left of the whole; the last lines (the order `REFUNDED`) take
/// all that is left, so the rounding never strands a fen.
pub fn refunded_share(credit: &LedgerEntry, order: &Order, lines: &[RefundLine]) -> i64 {
    let left = (credit.amount - credit.reversed_amount).max(0);
    if order.order_status == OrderStatus::Refunded {
        return left;
    }
    let uncapped: i128 = credit.lines.iter().map(|l| i128::from(l.amount)).sum();
    if uncapped <= 0 {
        return 0;
    }
    let refunded: i128 = lines
        .iter()
        .filter_map(|line| {
            let rebate = credit
                .lines
                .iter()
                .find(|l| l.product_id == line.product_id)?;
            let bought = order
                .items
                .iter()
                .find(|l| l.product_id == line.product_id)?
                .quantity;
            (bought > 0)
                .then(|| i128::from(rebate.amount) * i128::from(line.quantity) / i128::from(bought))
        })
        .sum();
    let share = i128::from(credit.amount) * refunded / uncapped;
    i64::try_from(share).unwrap_or(i64::MAX).min(left)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub available: i64,
    #[serde(default = "crate::money::default_currency")]
    pub currency: String,
}

impl Balance {
    pub fn zero(currency: &str) -> Self {
        Self {
            pending: 0,
            available: 0,
            currency: currency.to_owned(),
        }
    }
}

/// What crediting an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    Credited(Box<LedgerEntry>),
    /// Nothing to credit (no rules, zero rebate, or refunded first).
    Nothing(&'static str),
    /// The order's credit, or this event, was already processed.
    AlreadyDone,
}

/// What reversing an order's rebate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversal {
    /// Some lines were refunded: this entry takes their share back (pending
    /// with its credit, or from the available balance).
    Reduced(Box<LedgerEntry>),
    /// The pending credit is now `REVERSED`.
    Reversed(Box<LedgerEntry>),
    /// The available credit got this clawback entry.
    ClawedBack(Box<LedgerEntry>),
    /// No credit yet: the order is marked so that none will come.
    Voided,
    Nothing,
    AlreadyDone,
}

/// What the completion of its order does to a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Pending with no release time yet: it gets the window's close.
    Schedule,
    /// Already has its release time (a redelivered completion, or an entry
    /// written before credits waited for completion): unchanged.
    AlreadyScheduled,
    /// Available or reversed: completion has nothing left to do.
    Settled,
}

/// The settlement step for one entry when its order is completed.
pub fn settlement(entry: &LedgerEntry) -> Settlement {
    match (entry.status, &entry.available_at) {
        (EntryStatus::Pending, None) => Settlement::Schedule,
        (EntryStatus::Pending, Some(_)) => Settlement::AlreadyScheduled,
        (EntryStatus::Available | EntryStatus::Reversed, _) => Settlement::Settled,
    }
}

/// What completing an order did to its rebate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// This many pending entries (the credit and its reductions) got their
    /// release time.
    Scheduled(usize),
    /// No credit yet: the release time waits in a marker for the credit.
    BeforeCredit,
    /// Nothing pending to schedule (reversed, or no rebate earned).
    Nothing,
    AlreadyDone,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReport {
    pub released: usize,
    /// Due entries that something else settled first (reversed, or released
    /// by a concurrent run).
    pub already_settled: usize,
    /// The run stopped before its invocation's deadline with due entries
    /// left; the next run takes them.
    pub stopped_early: bool,
}

/// The calendar month (UTC) a time falls in, as `YYYY-MM`: the period of
/// the per-user monthly cap.
pub fn month_of(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

/// Why a rebate operation did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RebateError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no rebate rules have been set yet")]
    RulesNotSet,
    /// Another admin replaced the rules first.
    #[error("the rules changed while this request replaced version {replaced}")]
    RulesChanged { replaced: u32 },
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const PAID: OffsetDateTime = datetime!(2026-11-11 12:00 UTC);

    fn rules() -> RebateRules {
        RebateRules {
            version: 3,
            currency: "CNY".into(),
            default_rate_bps: 100,
            category_rates_bps: [("food".to_owned(), 200), ("electronics".to_owned(), 50)].into(),
            product_rates_bps: [("tea-longjing".to_owned(), 500)].into(),
            campaigns: Vec::new(),
            min_order_amount: 0,
            max_per_order: None,
            max_per_user_per_month: None,
        }
    }

    fn line(product: &str, category: &str, amount: i64) -> RebateLine {
        RebateLine {
            product_id: product.into(),
            category: category.into(),
            line_amount: amount,
        }
    }

    fn campaign(
        id: &str,
        kind: CampaignKind,
        rate: u32,
        starts: &str,
        ends: &str,
        categories: &[&str],
    ) -> Campaign {
        Campaign {
            campaign_id: id.into(),
            kind,
            rate_bps: rate,
            starts_at: starts.into(),
            ends_at: ends.into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            products: Vec::new(),
        }
    }

    /// (case, lines, rules, month so far, expected amount, expected cap)
    type Case = (
        &'static str,
        Vec<RebateLine>,
        RebateRules,
        i64,
        i64,
        Option<Cap>,
    );

    #[test]
    fn table() {
        let singles_day = campaign(
            "1111",
            CampaignKind::Extra,
            300,
            "2026-11-11T00:00:00Z",
            "2026-11-12T00:00:00Z",
            &[],
        );
        let replace_food = campaign(
            "food-week",
            CampaignKind::Replace,
            1000,
            "2026-11-10T00:00:00Z",
            "2026-11-17T00:00:00Z",
            &["food"],
        );
        let cases: Vec<Case> = vec![
            (
                "default rate",
                vec![line("shoe", "fashion", 10_000)],
                rules(),
                0,
                100,
                None,
            ),
            (
                "category rate",
                vec![line("mooncake", "food", 10_000)],
                rules(),
                0,
                200,
                None,
            ),
            (
                "product override beats category",
                vec![line("tea-longjing", "food", 10_000)],
                rules(),
                0,
                500,
                None,
            ),
            (
                "rounds down per line",
                vec![line("mooncake", "food", 1999)],
                rules(),
                0,
                39,
                None,
            ), // 39.98
            (
                "rounds each line before summing",
                vec![line("a", "food", 149), line("b", "food", 149)],
                rules(),
                0,
                4,
                None,
            ), // 2.98 + 2.98
            (
                "multi-category",
                vec![
                    line("tv", "electronics", 100_000),
                    line("mooncake", "food", 10_000),
                    line("shoe", "fashion", 5_000),
                ],
                rules(),
                0,
                500 + 200 + 50,
                None,
            ),
            (
                "zero rate earns nothing",
                vec![line("shoe", "fashion", 10_000)],
                RebateRules {
                    default_rate_bps: 0,
                    ..rules()
                },
                0,
                0,
                None,
            ),
            (
                "below the minimum order",
                vec![line("shoe", "fashion", 9_999)],
                RebateRules {
                    min_order_amount: 10_000,
                    ..rules()
                },
                0,
                0,
                None,
            ),
            (
                "at the minimum order",
                vec![line("shoe", "fashion", 10_000)],
                RebateRules {
                    min_order_amount: 10_000,
                    ..rules()
                },
                0,
                100,
                None,
            ),
            (
                "other currency earns nothing",
                vec![line("shoe", "fashion", 10_000)],
                RebateRules {
                    currency: "USD".into(),
                    ..rules()
                },
                0,
                0,
                None,
            ),
            (
                "extra campaign adds",
                vec![line("shoe", "fashion", 10_000)],
                RebateRules {
                    campaigns: vec![singles_day.clone()],
                    ..rules()
                },
                0,
                400,
                None,
            ),
            (
                "replace campaign replaces, extra still adds",
                vec![
                    line("mooncake", "food", 10_000),
                    line("shoe", "fashion", 10_000),
                ],
                RebateRules {
                    campaigns: vec![singles_day.clone(), replace_food.clone()],
                    ..rules()
                },
                0,
                1300 + 400,
                None,
            ),
            (
                "per-order cap",
                vec![line("tv", "electronics", 10_000_000)],
                RebateRules {
                    max_per_order: Some(2_000),
                    ..rules()
                },
                0,
                2_000,
                Some(Cap::PerOrder),
            ),
            (
                "monthly cap partly used",
                vec![line("shoe", "fashion", 100_000)],
                RebateRules {
                    max_per_user_per_month: Some(1_500),
                    ..rules()
                },
                1_000,
                500,
                Some(Cap::PerUserPerMonth),
            ),
            (
                "monthly cap used up",
                vec![line("shoe", "fashion", 100_000)],
                RebateRules {
                    max_per_user_per_month: Some(1_500),
                    ..rules()
                },
                1_500,
                0,
                Some(Cap::PerUserPerMonth),
            ),
            (
                "monthly cap not reached",
                vec![line("shoe", "fashion", 100_000)],
                RebateRules {
                    max_per_user_per_month: Some(5_000),
                    ..rules()
                },
                1_000,
                1_000,
                None,
            ),
            (
                "rates never exceed 100%",
                vec![line("shoe", "fashion", 10_000)],
                RebateRules {
                    default_rate_bps: 9_900,
                    campaigns: vec![singles_day.clone()],
                    ..rules()
                },
                0,
                10_000,
                None,
            ),
            (
                "huge lines do not overflow",
                vec![line("jet", "fashion", MAX_AMOUNT * 1000)],
                rules(),
                0,
                MAX_AMOUNT * 10,
                None,
            ),
        ];
        for (case, lines, rules, so_far, amount, cap) in cases {
            let e = evaluate(&lines, "CNY", PAID, so_far, &rules);
            assert_eq!((e.amount, e.capped_by), (amount, cap), "{case}");
            assert_eq!(e.rules_version, 3, "{case}");
        }
    }

    #[test]
    fn campaign_boundaries_start_inclusive_end_exclusive() {
        let c = campaign(
            "c",
            CampaignKind::Extra,
            100,
            "2026-11-11T00:00:00Z",
            "2026-11-12T00:00:00Z",
            &[],
        );
        let r = RebateRules {
            default_rate_bps: 0,
            campaigns: vec![c],
            ..rules()
        };
        let at =
            |t: OffsetDateTime| evaluate(&[line("x", "fashion", 10_000)], "CNY", t, 0, &r).amount;
        assert_eq!(at(datetime!(2026-11-10 23:59:59.999 UTC)), 0);
        assert_eq!(
            at(datetime!(2026-11-11 00:00 UTC)),
            100,
            "start is inclusive"
        );
        assert_eq!(at(datetime!(2026-11-11 23:59:59.999 UTC)), 100);
        assert_eq!(at(datetime!(2026-11-12 00:00 UTC)), 0, "end is exclusive");
        assert_eq!(
            at(datetime!(2026-11-11 08:00 +08:00)),
            100,
            "offsets compare as instants"
        );
    }

    #[test]
    fn breakdown_names_rates_and_campaigns() {
        let r = RebateRules {
            campaigns: vec![campaign(
                "double",
                CampaignKind::Extra,
                200,
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                &["food"],
            )],
            ..rules()
        };
        let e = evaluate(
            &[
                line("mooncake", "food", 1000),
                line("shoe", "fashion", 1000),
            ],
            "CNY",
            PAID,
            0,
            &r,
        );
        assert_eq!(
            e.lines[0],
            LineRebate {
                product_id: "mooncake".into(),
                rate_bps: 400,
                amount: 40,
                campaigns: vec!["double".into()]
            }
        );
        assert_eq!(
            e.lines[1],
            LineRebate {
                product_id: "shoe".into(),
                rate_bps: 100,
                amount: 10,
                campaigns: vec![]
            }
        );
    }

    #[test]
    fn months_start_at_utc_midnight_on_the_first() {
        assert_eq!(
            month_start(datetime!(2026-11-30 23:00 UTC)),
            datetime!(2026-11-01 00:00 UTC)
        );
        assert_eq!(
            month_start(datetime!(2026-12-01 01:00 +08:00)),
            datetime!(2026-11-01 00:00 UTC)
        );
    }

    #[test]
    fn validation_names_the_field() {
        let field = |r: RebateRules| r.validate().unwrap_err().field;
        assert!(rules().validate().is_ok());
        assert_eq!(
            field(RebateRules {
                default_rate_bps: 10_001,
                ..rules()
            }),
            "defaultRateBps"
        );
        assert_eq!(
            field(RebateRules {
                currency: "cny".into(),
                ..rules()
            }),
            "currency"
        );
        assert_eq!(
            field(RebateRules {
                category_rates_bps: [("food".to_owned(), 20_000)].into(),
                ..rules()
            }),
            "categoryRatesBps.food"
        );
        assert_eq!(
            field(RebateRules {
                product_rates_bps: [("bad id".to_owned(), 1)].into(),
                ..rules()
            }),
            "productRatesBps"
        );
        assert_eq!(
            field(RebateRules {
                min_order_amount: -1,
                ..rules()
            }),
            "minOrderAmount"
        );
        assert_eq!(
            field(RebateRules {
                max_per_order: Some(-5),
                ..rules()
            }),
            "maxPerOrder"
        );
        let c = campaign(
            "c",
            CampaignKind::Extra,
            1,
            "2026-11-12T00:00:00Z",
            "2026-11-11T00:00:00Z",
            &[],
        );
        assert_eq!(
            field(RebateRules {
                campaigns: vec![c.clone()],
                ..rules()
            }),
            "campaigns[0].endsAt"
        );
        let bad_time = Campaign {
            starts_at: "tomorrow".into(),
            ..c.clone()
        };
        assert_eq!(
            field(RebateRules {
                campaigns: vec![bad_time],
                ..rules()
            }),
            "campaigns[0].startsAt"
        );
        let ok = campaign(
            "c",
            CampaignKind::Extra,
            1,
            "2026-11-11T00:00:00Z",
            "2026-11-12T00:00:00Z",
            &[],
        );
        assert_eq!(
            field(RebateRules {
                campaigns: vec![ok.clone(), ok.clone()],
                ..rules()
            }),
            "campaigns[1].campaignId"
        );
        // Issue 28.1: the rule set is bounded, so its credits' events are.
        let many = |n: usize| RebateRules {
            campaigns: (0..n)
                .map(|i| Campaign {
                    campaign_id: format!("c{i}"),
                    ..ok.clone()
                })
                .collect(),
            ..rules()
        };
        assert!(many(MAX_CAMPAIGNS).validate().is_ok());
        assert_eq!(field(many(MAX_CAMPAIGNS + 1)), "campaigns");
    }

    #[test]
    fn documents_parse_with_defaults_and_reject_unknown_fields() {
        let r: RebateRules = serde_json::from_str(r#"{"defaultRateBps": 100, "campaigns": [{"campaignId": "c", "kind": "REPLACE", "rateBps": 5, "startsAt": "2026-11-11T00:00:00Z", "endsAt": "2026-11-12T00:00:00Z"}]}"#).unwrap();
        assert_eq!(r.currency, "CNY");
        assert_eq!(r.campaigns[0].kind, CampaignKind::Replace);
        assert!(r.validate().is_ok());
        let e = serde_json::from_str::<RebateRules>(r#"{"defaultRate": 100}"#).unwrap_err();
        assert!(e.to_string().contains("defaultRate"), "{e}");
        assert!(serde_json::from_str::<RebateRules>(r#"{"defaultRateBps": -1}"#).is_err());
    }

    /// Every status × scheduled or not: only a pending entry without a
    /// release time is scheduled by its order's completion.
    #[test]
    fn completion_schedules_only_unscheduled_pending_entries() {
        let entry = |status, available_at: Option<&str>| LedgerEntry {
            entry_id: "o-1".into(),
            user_id: "u".into(),
            order_id: "o".into(),
            withdrawal_id: None,
            kind: EntryKind::Credit,
            status,
            amount: 100,
            currency: "CNY".into(),
            rules_version: 1,
            lines: Vec::new(),
            capped_by: None,
            month: "2026-12".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
            available_at: available_at.map(str::to_owned),
            reversed_at: None,
            reversed_amount: 0,
        };
        let at = Some("2026-12-10T00:00:00.000Z");
        for (status, available_at, expected) in [
            (EntryStatus::Pending, None, Settlement::Schedule),
            (EntryStatus::Pending, at, Settlement::AlreadyScheduled),
            (EntryStatus::Available, None, Settlement::Settled),
            (EntryStatus::Available, at, Settlement::Settled),
            (EntryStatus::Reversed, None, Settlement::Settled),
            (EntryStatus::Reversed, at, Settlement::Settled),
        ] {
            let mut e = entry(status, available_at);
            assert_eq!(settlement(&e), expected, "{status:?} {available_at:?}");
            // A clawback or reduction settles as its credit does.
            e.kind = EntryKind::Clawback;
            assert_eq!(settlement(&e), expected, "clawback {status:?}");
        }
    }
}
