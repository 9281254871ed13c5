//! Sales figures: what the analytics consumer adds up per day, product and
//! currency, and the calendar dates the stats route takes.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::orders::{Order, OrderStatus};
use crate::refund_requests::RefundLine;

/// The longest range `GET /admin/stats/sales` answers.
pub const MAX_RANGE_DAYS: i64 = 366;
pub const TOP_PRODUCTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Figures {
    pub orders: i64,
    pub units: i64,
    pub revenue: i64,
}

impl Figures {
    /// Sums saturate: a figure past i64 (never reached by real sales, but
    /// reachable by hostile prices) stays at the maximum instead of
    /// wrapping or panicking.
    pub fn add(&mut self, other: Figures) {
        self.orders = self.orders.saturating_add(other.orders);
        self.units = self.units.saturating_add(other.units);
        self.revenue = self.revenue.saturating_add(other.revenue);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductFigures {
    pub product_id: String,
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One day's figures in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayReport {
    pub date: String,
    pub currency: String,
    #[serde(flatten)]
    pub totals: Figures,
    pub products: Vec<ProductFigures>,
    /// The aggregates' revision this report was made from.
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayTotals {
    pub date: String,
    #[serde(flatten)]
    pub totals: Figures,
    /// Whether the figures came from the day's rollup report.
    pub from_report: bool,
}

/// `GET /admin/stats/sales`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesStats {
    pub from: String,
    pub to: String,
    pub currency: String,
    #[serde(flatten)]
    pub totals: Figures,
    pub days: Vec<DayTotals>,
    pub top_products: Vec<ProductFigures>,
}

/// What one event changes in its day's figures: the day's totals and each
/// product's, negative to take sales back. Summed over every day, the
/// figures are what a recomputation from the orders gives: each paid
/// order's units and revenue not refunded, and the orders (overall and per
/// product) with any unit not refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleChange {
    pub totals: Figures,
    pub products: Vec<ProductFigures>,
}

impl SaleChange {
    /// A paid order: all of it.
    pub fn paid(order: &Order) -> Self {
        Self {
            totals: Figures {
                orders: 1,
                units: order.items.iter().map(|l| l.quantity).sum(),
                revenue: order.order_amount,
            },
            products: order
                .items
                .iter()
                .map(|line| ProductFigures {
                    product_id: line.product_id.clone(),
                    name: line.name.clone(),
                    figures: Figures {
                        orders: 1,
                        units: line.quantity,
                        revenue: line.line_amount,
                    },
                })
                .collect(),
        }
    }

    /// A paid order refunded whole (a cancel, or a late payment's refund):
    /// all of it back.
    pub fn refunded(order: &Order) -> Self {
        Self::paid(order).negated()
    }

    /// Some lines refunded by a request; `order` is the order after the
    /// refund. The order leaves the counts only when nothing of it is left
    /// (`REFUNDED`), a product only when none of its units are.
    pub fn lines_refunded(order: &Order, lines: &[RefundLine]) -> Self {
        let gone = |product_id: &str| {
            let bought = order
                .items
                .iter()
                .find(|l| l.product_id == product_id)
                .map_or(0, |l| l.quantity);
            order.refunded_units.get(product_id).copied().unwrap_or(0) >= bought
        };
        let taken = Self {
            totals: Figures {
                orders: i64::from(order.order_status == OrderStatus::Refunded),
                units: lines.iter().map(|l| l.quantity).sum(),
                revenue: lines.iter().map(|l| l.amount).sum(),
            },
            products: lines
                .iter()
                .map(|line| ProductFigures {
                    product_id: line.product_id.clone(),
                    name: line.name.clone(),
                    figures: Figures {
                        orders: i64::from(gone(&line.product_id)),
                        units: line.quantity,
                        revenue: line.amount,
                    },
                })
                .collect(),
        };
        taken.negated()
    }

    fn negated(mut self) -> Self {
        let negate = |f: &mut Figures| {
            f.orders = -f.orders;
            f.units = -f.units;
            f.revenue = -f.revenue;
        };
        negate(&mut self.totals);
        self.products
            .iter_mut()
            .for_each(|p| negate(&mut p.figures));
        self
    }
}

pub fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Parses `YYYY-MM-DD`.
/// A calendar date as `YYYY-MM-DD`, four-digit years from 1970 (nothing
/// was sold before the epoch; no sign, no five-digit years).
pub fn parse_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year repr:full sign:automatic]-[month]-[day]");
    let well_formed = text.len() == 10 && text.as_bytes()[0].is_ascii_digit();
    Date::parse(text, &format)
        .ok()
        .filter(|d| well_formed && d.year() >= 1970)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let d = parse_date("2026-02-28").unwrap();
        assert_eq!(date_text(d + time::Duration::days(1)), "2026-03-01");
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("26-1-1").is_none());
        assert!(parse_date("2026-01-01T00:00:00Z").is_none());
        for bad in ["-0001-01-01", "+2026-01-01", "1969-12-31", "20261-01-01"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
        assert!(parse_date("9999-12-31").is_some());
    }
}
