//! Sales analytics: daily aggregates per product and per day, kept by the
//! analytics consumer, rolled up into one report item per day.
//!
//! The sales stats table holds, per UTC day (`pk = DAY#YYYY-MM-DD`):
//! - `sk = TOTAL#<currency>`: `orders`, `units`, `revenue` and a `revision`
//!   that every change increments;
//! - `sk = PRODUCT#<currency>#<productId>`: the same figures per product;
//! - `sk = REPORT#<currency>`: the rollup, a snapshot of the above at a
//!   revision. A change after it deletes it in the same transaction, so a
//!   report never disagrees with the aggregates: the stats route reads the
//!   report when there is one and the day's aggregates otherwise.
//!
//! A paid order adds to the day it was paid; a refund subtracts on the day
//! it was refunded (net sales per day). Each event counts once: its effect
//! commits with the consumer's processed-event marker.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use time::Date;

use crate::config::Tables;
use crate::db::{DbError, Item, Transact, backoff, build_err, conflicted, n, s, transact};
use crate::outbox::ProcessedMarker;
use domain::clock;
use domain::orders::Order;
use domain::sales::{
    DayReport, DayTotals, Figures, ProductFigures, SaleChange, SalesStats, TOP_PRODUCTS, date_text,
};

const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone, Debug)]
pub struct Sales {
    client: Client,
    tables: Tables,
}

fn day_pk(date: &str) -> String {
    format!("DAY#{date}")
}

fn total_sk(currency: &str) -> String {
    format!("TOTAL#{currency}")
}

fn product_sk(currency: &str, product_id: &str) -> String {
    format!("PRODUCT#{currency}#{product_id}")
}

fn report_sk(currency: &str) -> String {
    format!("REPORT#{currency}")
}

fn number(item: &Item, name: &str) -> i64 {
    crate::db::number(item, name).unwrap_or(0)
}

fn figures(item: &Item) -> Figures {
    Figures {
        orders: number(item, "orders"),
        units: number(item, "units"),
        revenue: number(item, "revenue"),
    }
}

impl Sales {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    fn update(&self, pk: &str, sk: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.sales_stats)
            .key("pk", s(pk))
            .key("sk", s(sk))
    }

    /// Adds `change` to `order`'s figures on `date`, once per marker.
    /// `false` when the marker says it was already counted.
    pub async fn record(
        &self,
        order: &Order,
        change: &SaleChange,
        date: Date,
        marker: &ProcessedMarker,
    ) -> Result<bool, DbError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let items = self.recording(&order.currency, change, date, marker)?;
            match transact(&self.client, items).await? {
                Transact::Committed => return Ok(true),
                Transact::Cancelled(reasons)
                    if reasons.first().is_some_and(crate::db::condition_failed) =>
                {
                    return Ok(false);
                }
                Transact::Cancelled(reasons) if conflicted(&reasons) => {
                    if attempt < MAX_ATTEMPTS {
                        backoff(attempt).await;
                    }
                }
                Transact::Cancelled(reasons) => {
                    return Err(DbError::Unavailable(format!(
                        "recording sales of order {} cancelled: {reasons:?}",
                        order.order_id
                    )));
                }
            }
        }
        Err(DbError::Unavailable(format!(
            "recording sales of order {} kept conflicting",
            order.order_id
        )))
    }

    /// The transaction that records a change: the consumer's marker first,
    /// the day's total, the deletion of the day's report (now stale), and
    /// each product's figures.
    fn recording(
        &self,
        currency: &str,
        change: &SaleChange,
        date: Date,
        marker: &ProcessedMarker,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let pk = day_pk(&date_text(date));
        let add = |update: aws_sdk_dynamodb::types::builders::UpdateBuilder, figures: Figures| {
            update
                .expression_attribute_values(":o", n(figures.orders))
                .expression_attribute_values(":u", n(figures.units))
                .expression_attribute_values(":r", n(figures.revenue))
                .build()
                .map_err(build_err)
        };
        let total = add(
            self.update(&pk, &total_sk(currency))
                .update_expression("ADD orders :o, units :u, revenue :r, revision :one")
                .expression_attribute_values(":one", n(1)),
            change.totals,
        )?;
        let report = Delete::builder()
            .table_name(&self.tables.sales_stats)
            .key("pk", s(&pk))
            .key("sk", s(&report_sk(currency)))
            .build()
            .map_err(build_err)?;
        let mut items = vec![
            TransactWriteItem::builder()
                .put(marker.put(&clock::now_rfc3339())?)
                .build(),
            TransactWriteItem::builder().update(total).build(),
            TransactWriteItem::builder().delete(report).build(),
        ];
        for product in &change.products {
            let update = add(
                self.update(&pk, &product_sk(currency, &product.product_id))
                    .update_expression(
                        "SET productId = :p, #name = :n ADD orders :o, units :u, revenue :r",
                    )
                    .expression_attribute_names("#name", "name")
                    .expression_attribute_values(":p", s(&product.product_id))
                    .expression_attribute_values(":n", s(&product.name)),
                product.figures,
            )?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }

    /// The currencies the day has sales in.
    pub async fn currencies(&self, date: Date) -> Result<Vec<String>, DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.sales_stats)
            .key_condition_expression("pk = :pk AND begins_with(sk, :total)")
            .expression_attribute_values(":pk", s(&day_pk(&date_text(date))))
            .expression_attribute_values(":total", s("TOTAL#"))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| match item.get("sk") {
                Some(AttributeValue::S(sk)) => sk.strip_prefix("TOTAL#").map(str::to_owned),
                _ => None,
            })
            .collect())
    }

    /// The day's figures from its aggregates (one query of its partition).
    pub async fn live_day(&self, date: &str, currency: &str) -> Result<DayReport, DbError> {
        let pk = day_pk(date);
        let mut report = DayReport {
            date: date.to_owned(),
            currency: currency.to_owned(),
            totals: Figures::default(),
            products: Vec::new(),
            revision: 0,
        };
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.sales_stats)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                let Some(AttributeValue::S(sk)) = item.get("sk") else {
                    continue;
                };
                if *sk == total_sk(currency) {
                    report.totals = figures(&item);
                    report.revision = number(&item, "revision");
                } else if sk.starts_with(&product_sk(currency, "")) {
                    let text = |name: &str| match item.get(name) {
                        Some(AttributeValue::S(v)) => v.clone(),
                        _ => String::new(),
                    };
                    report.products.push(ProductFigures {
                        product_id: text("productId"),
                        name: text("name"),
                        figures: figures(&item),
                    });
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(report);
            }
        }
    }

    /// Writes the day's report from its aggregates. Running it again gives
    /// the same report; a change committed meanwhile cancels the write
    /// (the revision moved), and the next run takes it in.
    pub async fn roll_up(&self, date: Date, currency: &str) -> Result<DayReport, DbError> {
        let date = date_text(date);
        let pk = day_pk(&date);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let report = self.live_day(&date, currency).await?;
            let document =
                serde_json::to_string(&report).map_err(|e| DbError::Corrupt(e.to_string()))?;
            let put = Put::builder()
                .table_name(&self.tables.sales_stats)
                .item("pk", s(&pk))
                .item("sk", s(&report_sk(currency)))
                .item("report", s(&document))
                .build()
                .map_err(build_err)?;
            let unchanged = ConditionCheck::builder()
                .table_name(&self.tables.sales_stats)
                .key("pk", s(&pk))
                .key("sk", s(&total_sk(currency)))
                .condition_expression("attribute_not_exists(revision) OR revision = :seen")
                .expression_attribute_values(":seen", n(report.revision))
                .build()
                .map_err(build_err)?;
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder()
                    .condition_check(unchanged)
                    .build(),
            ];
            match transact(&self.client, items).await? {
                Transact::Committed => return Ok(report),
                Transact::Cancelled(_) if attempt < MAX_ATTEMPTS => backoff(attempt).await,
                Transact::Cancelled(reasons) => {
                    return Err(DbError::Unavailable(format!(
                        "the sales of {date} kept changing during the rollup: {reasons:?}"
                    )));
                }
            }
        }
    }

    /// Figures for `from..=to`: each day's report where there is one (read
    /// in batches of 100 keys), its aggregates where not; no scans.
    pub async fn stats(&self, from: Date, to: Date, currency: &str) -> Result<SalesStats, DbError> {
        let mut dates = Vec::new();
        let mut day = Some(from);
        // next_day is None after 9999-12-31: the range ends there.
        while let Some(current) = day.filter(|d| *d <= to) {
            dates.push(date_text(current));
            day = current.next_day();
        }
        let mut reports: HashMap<String, DayReport> = HashMap::new();
        for chunk in dates.chunks(100) {
            for item in self.batch_get_reports(chunk, currency).await? {
                if let Some(AttributeValue::S(json)) = item.get("report") {
                    let report: DayReport = serde_json::from_str(json)
                        .map_err(|e| DbError::Corrupt(format!("sales report: {e}")))?;
                    reports.insert(report.date.clone(), report);
                }
            }
        }
        let mut stats = SalesStats {
            from: date_text(from),
            to: date_text(to),
            currency: currency.to_owned(),
            totals: Figures::default(),
            days: Vec::with_capacity(dates.len()),
            top_products: Vec::new(),
        };
        let mut products: BTreeMap<String, ProductFigures> = BTreeMap::new();
        for date in &dates {
            let (report, from_report) = match reports.remove(date) {
                Some(report) => (report, true),
                None => (self.live_day(date, currency).await?, false),
            };
            stats.totals.add(report.totals);
            stats.days.push(DayTotals {
                date: date.clone(),
                totals: report.totals,
                from_report,
            });
            for product in report.products {
                products
                    .entry(product.product_id.clone())
                    .and_modify(|p| p.figures.add(product.figures))
                    .or_insert(product);
            }
        }
        let mut top: Vec<ProductFigures> = products.into_values().collect();
        top.sort_by(|a, b| {
            b.figures
                .revenue
                .cmp(&a.figures.revenue)
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        top.truncate(TOP_PRODUCTS);
        stats.top_products = top;
        Ok(stats)
    }

    async fn batch_get_reports(
        &self,
        dates: &[String],
        currency: &str,
    ) -> Result<Vec<Item>, DbError> {
        let keys: Vec<Item> = dates
            .iter()
            .map(|d| {
                [
                    ("pk".to_owned(), s(&day_pk(d))),
                    ("sk".to_owned(), s(&report_sk(currency))),
                ]
                .into()
            })
            .collect();
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(build_err)?;
        let mut found = crate::db::batch_get(
            &self.client,
            [(self.tables.sales_stats.clone(), keys)].into(),
        )
        .await?;
        Ok(found.remove(&self.tables.sales_stats).unwrap_or_default())
    }
}
