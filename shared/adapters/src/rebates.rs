//! Rebate storage: the rules document, the ledger and the balances.
//!
//! The rebates table holds, per user (`pk = USER#<userId>`):
//! - ledger entries, `sk = ENTRY#<orderId>#1` (the credit),
//!   `ENTRY#<orderId>#2` (its clawback after a whole refund) and
//!   `ENTRY#<orderId>#3#<refundRequestId>` (the share a refund of some lines
//!   took back), so each order has at most one credit and one entry per
//!   refund, and a user's entries read newest order first;
//! - `sk = BALANCE#<currency>`: `pending` and `available` in that currency,
//!   changed only in the same transaction as the entries they sum (a
//!   `BALANCE` item without a currency suffix, written before balances were
//!   kept per currency, is read as one more item of its `currency`);
//! - `sk = MONTH#YYYY-MM#<currency>`: what the user earned that calendar
//!   month in that currency, for the monthly cap (the rules' caps are in
//!   the rules' currency);
//! - `sk = VOID#<orderId>`: the order was refunded before its rebate was
//!   credited (events can arrive out of order), so it never will be;
//! - `sk = SETTLE#<orderId>`: the order was completed before its rebate was
//!   credited; holds when the credit is to become available.
//!
//! Entry states: a credit starts `PENDING` with no release time; its
//! order's completion sets `availableAt` (the after-sales window's close)
//! on it and its pending reductions, and from then the release sweep makes
//! them `AVAILABLE`. A refund or cancel makes a `PENDING`
//! credit `REVERSED`, and gives an `AVAILABLE` one a negative `CLAWBACK`
//! entry. Every move is one transaction conditional on the entry's current
//! status, so the balances always equal the sums of the entries.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use time::OffsetDateTime;

use crate::config::Tables;
use crate::db::{
    DbError, Item, Transact, backoff, build_err, condition_failed, conflicted, n, number, s,
    transact,
};
use crate::due_index::DueIndex;
use crate::outbox::ProcessedMarker;
use domain::clock;
use domain::events::{Envelope, EventType};
use domain::orders::Order;
use domain::rebates::{
    Balance, Credit, EntryKind, EntryStatus, LedgerEntry, RebateError, RebateLine, RebateRules,
    ReleaseReport, Reversal, Settled, Settlement, evaluate, month_of, refunded_share, settlement,
};
use domain::refund_requests::LinesRefunded;

pub const RELEASE_INDEX: &str = "byRelease";
/// The key attributes of a ledger page token.
pub const ENTRY_KEY: &[&str] = &["pk", "sk"];
const CURRENT_RULES: &str = "current";
/// Attempts at a transaction that lost a race (another credit of the same
/// user this month, a release, a concurrent transaction).
const MAX_ATTEMPTS: u32 = 8;

/// A completion's updates per transaction, below DynamoDB's 100 items with
/// room for the credit and the consumer's marker.
const SCHEDULES_PER_TRANSACTION: usize = 90;

#[derive(Clone, Debug)]
pub struct Rebates {
    client: Client,
    tables: Tables,
}

pub(crate) fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

fn credit_sk(order_id: &str) -> String {
    format!("ENTRY#{order_id}#1")
}

fn clawback_sk(order_id: &str) -> String {
    format!("ENTRY#{order_id}#2")
}

fn month_sk(month: &str, currency: &str) -> String {
    format!("MONTH#{month}#{currency}")
}

pub(crate) fn balance_sk(currency: &str) -> String {
    format!("BALANCE#{currency}")
}

/// The entry that takes back refund request `request_id`'s share.
fn reduction_sk(order_id: &str, request_id: &str) -> String {
    format!("ENTRY#{order_id}#3#{request_id}")
}

fn void_sk(order_id: &str) -> String {
    format!("VOID#{order_id}")
}

fn settle_sk(order_id: &str) -> String {
    format!("SETTLE#{order_id}")
}

/// The prefix of every ledger entry of one order.
fn order_entries_prefix(order_id: &str) -> String {
    format!("ENTRY#{order_id}#")
}

impl Rebates {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    /// An update of one item of the rebates table.
    fn update(&self, pk: &str, sk: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(pk))
            .key("sk", s(sk))
    }

    // ------------------------------------------------------------- rules

    pub async fn rules(&self) -> Result<Option<RebateRules>, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rebate_rules)
            .key("rulesId", s(CURRENT_RULES))
            .consistent_read(true)
            .send()
            .await?;
        out.item.as_ref().map(parse_rules).transpose()
    }

    /// The current rules, or 404 when none were ever set.
    pub async fn current_rules(&self) -> Result<RebateRules, RebateError> {
        self.rules().await?.ok_or(RebateError::RulesNotSet)
    }

    /// Stores `rules` as the next version (and keeps the earlier ones).
    /// Two admins replacing at once: one wins, the other gets 409.
    pub async fn replace_rules(
        &self,
        mut rules: RebateRules,
        updated_by: &str,
    ) -> Result<RebateRules, RebateError> {
        rules.validate()?;
        let previous = self.rules().await?.map(|r| r.version).unwrap_or(0);
        rules.version = previous + 1;
        let document =
            serde_json::to_string(&rules).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let now = clock::now_rfc3339();
        let put = |id: String| {
            Put::builder()
                .table_name(&self.tables.rebate_rules)
                .item("rulesId", s(&id))
                .item("version", n(i64::from(rules.version)))
                .item("document", s(&document))
                .item("updatedAt", s(&now))
                .item("updatedBy", s(updated_by))
        };
        let current = put(CURRENT_RULES.to_owned())
            .condition_expression("attribute_not_exists(rulesId) OR version = :previous")
            .expression_attribute_values(":previous", n(i64::from(previous)))
            .build()
            .map_err(build_err)?;
        let history = put(format!("v#{:010}", rules.version))
            .condition_expression("attribute_not_exists(rulesId)")
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().put(current).build(),
            TransactWriteItem::builder().put(history).build(),
        ];
        match transact(&self.client, items).await? {
            Transact::Committed => Ok(rules),
            Transact::Cancelled(_) => Err(RebateError::RulesChanged { replaced: previous }),
        }
    }

    // ------------------------------------------------------------ credit

    /// Credits what a paid order earns: one `PENDING` entry per order,
    /// its balance and monthly total, the `RebateCredited` event and the
    /// consumer's marker, in one transaction.
    pub async fn credit(
        &self,
        order: &Order,
        paid_at: OffsetDateTime,
        marker: &ProcessedMarker,
        correlation_id: &str,
    ) -> Result<Credit, DbError> {
        let pk = user_pk(&order.user_id);
        let month = month_of(paid_at);
        let lines: Vec<RebateLine> = order
            .items
            .iter()
            .map(|l| RebateLine {
                product_id: l.product_id.clone(),
                category: l.category.clone(),
                line_amount: l.line_amount,
            })
            .collect();
        for attempt in 1..=MAX_ATTEMPTS {
            let read = self
                .credit_inputs(&pk, &month, &order.currency, &order.order_id)
                .await?;
            let (rules, month_total) = (read.rules, read.month_total);
            let Some(rules) = rules else {
                return Ok(Credit::Nothing("no rebate rules are set"));
            };
            // A late or redriven event is credited under the rules that were
            // in force when the order was paid, not today's.
            let Some(rules) = self.rules_in_force_at(rules, paid_at).await? else {
                return Ok(Credit::Nothing("no rebate rules were set when it was paid"));
            };
            let evaluation = evaluate(&lines, &order.currency, paid_at, month_total, &rules);
            if evaluation.amount <= 0 {
                return Ok(Credit::Nothing("the order earns no rebate"));
            }
            let entry = new_credit(
                order,
                evaluation,
                &rules.currency,
                &month,
                read.available_at,
            );
            let items = self.crediting(&pk, &entry, month_total, marker, correlation_id)?;
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => {
                    crate::metrics::increment(crate::metrics::Metric::RebatesCredited);
                    return Ok(Credit::Credited(Box::new(entry)));
                }
                Transact::Cancelled(reasons) => reasons,
            };
            // The items' order is `crediting`'s.
            let failed = |i: usize| reasons.get(i).is_some_and(condition_failed);
            if failed(0) {
                return Ok(Credit::Nothing(
                    "the order was refunded before its rebate was credited",
                ));
            }
            if failed(1) || failed(5) {
                return Ok(Credit::AlreadyDone);
            }
            // The month's total moved, or the order was completed meanwhile
            // (its release time is to be read): evaluate again.
            let month_moved = failed(3);
            let completed_meanwhile = failed(6);
            if !(month_moved || completed_meanwhile || conflicted(&reasons)) {
                return Err(DbError::Unavailable(format!(
                    "crediting order {} cancelled: {reasons:?}",
                    order.order_id
                )));
            }
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(DbError::Unavailable(format!(
            "crediting order {} kept conflicting",
            order.order_id
        )))
    }

    /// The credit's transaction, in this order: no void for the order (0),
    /// the entry (1), the pending balance (2), the month's total as it was
    /// read when the cap was computed (3), the event (4), the consumer's
    /// marker (5), and, for a credit whose order was not completed when
    /// read, still no completion marker (6): a completion racing the credit
    /// either finds the credit or leaves its marker for the next attempt.
    fn crediting(
        &self,
        pk: &str,
        entry: &LedgerEntry,
        month_total: i64,
        marker: &ProcessedMarker,
        correlation_id: &str,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let order_id = &entry.order_id;
        let void = ConditionCheck::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(pk))
            .key("sk", s(&void_sk(order_id)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let mut item = self.entry_item(entry, &credit_sk(order_id))?;
        if entry.available_at.is_some() {
            item.insert(
                "releaseShard".into(),
                s(&crate::due_index::shard_of(order_id)),
            );
        }
        let put = Put::builder()
            .table_name(&self.tables.rebates)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let balance = self.balance_update(pk, &entry.currency, &[("pending", entry.amount)])?;
        let month = self
            .update(pk, &month_sk(&entry.month, &entry.currency))
            .update_expression("ADD earned :a")
            // The cap was computed from `month_total`; if another credit
            // moved it since, evaluate again.
            .condition_expression("attribute_not_exists(earned) OR earned = :seen")
            .expression_attribute_values(":a", n(entry.amount))
            .expression_attribute_values(":seen", n(month_total))
            .build()
            .map_err(build_err)?;
        let event = Envelope::new(
            EventType::RebateCredited,
            correlation_id,
            &entry.created_at,
            entry,
        )?;
        let mut items = vec![
            TransactWriteItem::builder().condition_check(void).build(),
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(balance).build(),
            TransactWriteItem::builder().update(month).build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
            TransactWriteItem::builder()
                .put(marker.put(&entry.created_at)?)
                .build(),
        ];
        if entry.available_at.is_none() {
            let not_completed = ConditionCheck::builder()
                .table_name(&self.tables.rebates)
                .key("pk", s(pk))
                .key("sk", s(&settle_sk(order_id)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            items.push(
                TransactWriteItem::builder()
                    .condition_check(not_completed)
                    .build(),
            );
        }
        Ok(items)
    }

    /// What a credit is computed from, in one round trip: the rules, the
    /// user's total this month in `currency`, and the release time the
    /// order's completion left if it came first.
    async fn credit_inputs(
        &self,
        pk: &str,
        month: &str,
        currency: &str,
        order_id: &str,
    ) -> Result<CreditInputs, DbError> {
        let rules_key = KeysAndAttributes::builder()
            .keys([("rulesId".to_owned(), s(CURRENT_RULES))].into())
            .consistent_read(true)
            .build()
            .map_err(build_err)?;
        let key = |sk: String| [("pk".to_owned(), s(pk)), ("sk".to_owned(), s(&sk))].into();
        let ledger_keys = KeysAndAttributes::builder()
            .keys(key(month_sk(month, currency)))
            .keys(key(settle_sk(order_id)))
            .consistent_read(true)
            .build()
            .map_err(build_err)?;
        let mut found = crate::db::batch_get(
            &self.client,
            [
                (self.tables.rebate_rules.clone(), rules_key),
                (self.tables.rebates.clone(), ledger_keys),
            ]
            .into(),
        )
        .await?;
        let rules = found
            .remove(&self.tables.rebate_rules)
            .unwrap_or_default()
            .first()
            .map(|item| Ok::<_, DbError>((parse_rules(item)?, updated_at(item))))
            .transpose()?;
        let ledger = found.remove(&self.tables.rebates).unwrap_or_default();
        let sk_of = |item: &Item| match item.get("sk") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            _ => String::new(),
        };
        let month_total = ledger
            .iter()
            .find(|item| sk_of(item).starts_with("MONTH#"))
            .map_or(0, |item| number(item, "earned").unwrap_or(0));
        let available_at = ledger
            .iter()
            .find(|item| sk_of(item).starts_with("SETTLE#"))
            .and_then(|item| match item.get("availableAt") {
                Some(AttributeValue::S(at)) => Some(at.clone()),
                _ => None,
            });
        Ok(CreditInputs {
            rules,
            month_total,
            available_at,
        })
    }

    /// The version of the rules that was in force at `at`: the current one
    /// if it was set by then (the common case, no read), else the newest
    /// earlier version set by then, read back through the kept history.
    /// `None` when no rules were set yet at `at`.
    ///
    /// Each version is written with the current rules in one transaction, so
    /// versions are numbered in the order they were set and their times rise
    /// with their numbers: a binary search reads O(log n) of them. (A walk
    /// back read one per version since: a late event of an order paid before
    /// many edits cost a read per edit, ~9 ms of CPU in the bench after ~50.)
    /// The version just before the current one is read first: a late event
    /// usually straddles only the last change.
    async fn rules_in_force_at(
        &self,
        (current, updated): (RebateRules, String),
        at: OffsetDateTime,
    ) -> Result<Option<RebateRules>, DbError> {
        let set_by = |updated: &str| {
            OffsetDateTime::parse(updated, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|t| t <= at)
        };
        if set_by(&updated) {
            return Ok(Some(current));
        }
        // Every version above `hi` was set after `at`; `found` is the latest
        // version read that was set by then.
        let (mut lo, mut hi) = (1, current.version.saturating_sub(1));
        let mut found = None;
        let mut probe = hi;
        while lo <= hi {
            match self.rules_version_at_or_below(probe, lo).await? {
                // None in [lo, probe] (versions missing from the history).
                None => lo = probe + 1,
                Some((version, item)) => {
                    if set_by(&updated_at(&item)) {
                        found = Some(item);
                        lo = probe + 1;
                    } else {
                        hi = version - 1;
                    }
                }
            }
            probe = lo + hi.saturating_sub(lo) / 2;
        }
        found.as_ref().map(parse_rules).transpose()
    }

    /// The newest stored version from `version` down to `lowest`: every
    /// version is stored with its rules, but a history edited by hand may
    /// miss one.
    async fn rules_version_at_or_below(
        &self,
        version: u32,
        lowest: u32,
    ) -> Result<Option<(u32, Item)>, DbError> {
        for version in (lowest..=version).rev() {
            if let Some(item) = self.rules_item(&format!("v#{version:010}")).await? {
                return Ok(Some((version, item)));
            }
        }
        Ok(None)
    }

    async fn rules_item(&self, rules_id: &str) -> Result<Option<Item>, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rebate_rules)
            .key("rulesId", s(rules_id))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    // ----------------------------------------------------------- reversal

    /// Takes back what a refunded or cancelled order earned. With no credit
    /// yet and `may_still_be_credited` (a refund: the order was paid, and
    /// its `OrderPaid` may still be on its way), marks the order so that no
    /// credit will ever be made.
    pub async fn reverse(
        &self,
        order: &Order,
        may_still_be_credited: bool,
        marker: &ProcessedMarker,
        correlation_id: &str,
    ) -> Result<Reversal, DbError> {
        let pk = user_pk(&order.user_id);
        for attempt in 1..=MAX_ATTEMPTS {
            let now = clock::now_rfc3339();
            let credit = self.entry(&pk, &credit_sk(&order.order_id)).await?;
            let (mut items, outcome) = match credit {
                None if !may_still_be_credited => return Ok(Reversal::Nothing),
                None => self.void_before_credit(&pk, &order.order_id, &now)?,
                Some(entry)
                    if entry.status == EntryStatus::Reversed || entry.reversed_at.is_some() =>
                {
                    return Ok(Reversal::AlreadyDone);
                }
                Some(entry) if entry.status == EntryStatus::Pending => {
                    self.reverse_pending(&pk, entry, &now, correlation_id)?
                }
                Some(entry) => self.claw_back(&pk, entry, &now, correlation_id)?,
            };
            items.push(TransactWriteItem::builder().put(marker.put(&now)?).build());
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => return Ok(outcome),
                Transact::Cancelled(reasons) => reasons,
            };
            let marker_there = reasons.last().is_some_and(condition_failed);
            let voided_before =
                outcome == Reversal::Voided && reasons.first().is_some_and(condition_failed);
            if marker_there || voided_before {
                return Ok(Reversal::AlreadyDone);
            }
            // The entry moved (released, credited or reversed meanwhile):
            // read it again and take the path its new state needs.
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(DbError::Unavailable(format!(
            "reversing order {} kept conflicting",
            order.order_id
        )))
    }

    /// No credit yet: mark the order so that none will come (the credit,
    /// had it won the race, cancels this with its own existence).
    fn void_before_credit(
        &self,
        pk: &str,
        order_id: &str,
        now: &str,
    ) -> Result<(Vec<TransactWriteItem>, Reversal), DbError> {
        let void = Put::builder()
            .table_name(&self.tables.rebates)
            .item("pk", s(pk))
            .item("sk", s(&void_sk(order_id)))
            .item("voidedAt", s(now))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let no_credit = ConditionCheck::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(pk))
            .key("sk", s(&credit_sk(order_id)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().put(void).build(),
            TransactWriteItem::builder()
                .condition_check(no_credit)
                .build(),
        ];
        Ok((items, Reversal::Voided))
    }

    /// A pending credit becomes `REVERSED` and leaves the pending balance
    /// and the month's total.
    fn reverse_pending(
        &self,
        pk: &str,
        entry: LedgerEntry,
        now: &str,
        correlation_id: &str,
    ) -> Result<(Vec<TransactWriteItem>, Reversal), DbError> {
        let reversed = LedgerEntry {
            status: EntryStatus::Reversed,
            updated_at: now.to_owned(),
            reversed_at: Some(now.to_owned()),
            ..entry
        };
        let update = self
            .update(pk, &credit_sk(&reversed.order_id))
            .update_expression(
                "SET #status = :reversed, updatedAt = :now, reversedAt = :now REMOVE releaseShard",
            )
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":reversed", s(EntryStatus::Reversed.as_str()))
            .expression_attribute_values(":pending", s(EntryStatus::Pending.as_str()))
            .expression_attribute_values(":now", s(now))
            .build()
            .map_err(build_err)?;
        let balance =
            self.balance_update(pk, &reversed.currency, &[("pending", -reversed.amount)])?;
        let event = Envelope::new(EventType::RebateReversed, correlation_id, now, &reversed)?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().update(balance).build(),
            TransactWriteItem::builder()
                .update(self.month_decrement(pk, &reversed)?)
                .build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ];
        Ok((items, Reversal::Reversed(Box::new(reversed))))
    }

    /// An available credit stays as it was (its money may be spent) and gets
    /// a negative `CLAWBACK` entry, taken from the available balance.
    fn claw_back(
        &self,
        pk: &str,
        entry: LedgerEntry,
        now: &str,
        correlation_id: &str,
    ) -> Result<(Vec<TransactWriteItem>, Reversal), DbError> {
        let order_id = entry.order_id.clone();
        let clawback = LedgerEntry {
            entry_id: format!("{order_id}-2"),
            kind: EntryKind::Clawback,
            status: EntryStatus::Available,
            amount: -entry.amount,
            lines: Vec::new(),
            capped_by: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            available_at: None,
            reversed_at: None,
            reversed_amount: 0,
            ..entry.clone()
        };
        let put = Put::builder()
            .table_name(&self.tables.rebates)
            .set_item(Some(self.entry_item(&clawback, &clawback_sk(&order_id))?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let mark = self
            .update(pk, &credit_sk(&order_id))
            .update_expression("SET updatedAt = :now, reversedAt = :now")
            .condition_expression("#status = :available AND attribute_not_exists(reversedAt)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":available", s(EntryStatus::Available.as_str()))
            .expression_attribute_values(":now", s(now))
            .build()
            .map_err(build_err)?;
        let balance = self.balance_update(pk, &entry.currency, &[("available", -entry.amount)])?;
        let event = Envelope::new(EventType::RebateReversed, correlation_id, now, &clawback)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(mark).build(),
            TransactWriteItem::builder().update(balance).build(),
            TransactWriteItem::builder()
                .update(self.month_decrement(pk, &entry)?)
                .build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ];
        Ok((items, Reversal::ClawedBack(Box::new(clawback))))
    }

    /// Takes back the rebate of a refund request's lines: an entry of its
    /// own, `-share` (`refunded_share`), in the credit's status. A pending
    /// one carries the credit's release time and is released with it (the
    /// pending balance is reduced now, the available one gets the net); an
    /// available one comes off the available balance at once. The credit's
    /// `reversedAmount` moves by as much, in the same transaction,
    /// conditional on the credit being as read (a release or another
    /// request's reduction racing this one is read again).
    ///
    /// A whole reversal (`reverse`) never follows: an order with refunded
    /// lines can no longer be cancelled, and its last lines' refund takes
    /// what is left here.
    pub async fn reverse_lines(
        &self,
        refund: &LinesRefunded,
        marker: &ProcessedMarker,
        correlation_id: &str,
    ) -> Result<Reversal, DbError> {
        let order = &refund.order;
        let request_id = &refund.refund_request.refund_request_id;
        let pk = user_pk(&order.user_id);
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(credit) = self.entry(&pk, &credit_sk(&order.order_id)).await? else {
                // Nothing was credited (no rules, or below the minimum):
                // nothing to take back.
                return Ok(Reversal::Nothing);
            };
            if credit.status == EntryStatus::Reversed || credit.reversed_at.is_some() {
                return Ok(Reversal::AlreadyDone);
            }
            let share = refunded_share(&credit, order, &refund.refund_request.items);
            if share <= 0 {
                return Ok(Reversal::Nothing);
            }
            let now = clock::now_rfc3339();
            let pending = credit.status == EntryStatus::Pending;
            let reduction = LedgerEntry {
                entry_id: format!("{}-3-{request_id}", order.order_id),
                kind: EntryKind::Clawback,
                amount: -share,
                lines: Vec::new(),
                capped_by: None,
                created_at: now.clone(),
                updated_at: now.clone(),
                available_at: if pending {
                    credit.available_at.clone()
                } else {
                    None
                },
                reversed_at: None,
                reversed_amount: 0,
                ..credit.clone()
            };
            let mut item =
                self.entry_item(&reduction, &reduction_sk(&order.order_id, request_id))?;
            if pending && credit.available_at.is_some() {
                item.insert(
                    "releaseShard".into(),
                    s(&crate::due_index::shard_of(&order.order_id)),
                );
            }
            let put = Put::builder()
                .table_name(&self.tables.rebates)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            // Conditional on the release time as read too: a completion
            // scheduling the credit meanwhile must not leave this reduction
            // without one (read again and copy it).
            let scheduled_as_read = match &credit.available_at {
                Some(_) => "availableAt = :availableAt",
                None => "attribute_not_exists(availableAt)",
            };
            let mark = self
                .update(&pk, &credit_sk(&order.order_id))
                .update_expression("SET reversedAmount = :total, updatedAt = :now")
                .condition_expression(format!(
                    "#status = :read AND attribute_not_exists(reversedAt) AND (attribute_not_exists(reversedAmount) OR reversedAmount = :before) AND {scheduled_as_read}"
                ))
                .set_expression_attribute_values(
                    credit
                        .available_at
                        .as_ref()
                        .map(|at| [(":availableAt".to_owned(), s(at))].into()),
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":read", s(credit.status.as_str()))
                .expression_attribute_values(":before", n(credit.reversed_amount))
                .expression_attribute_values(":total", n(credit.reversed_amount + share))
                .expression_attribute_values(":now", s(&now))
                .build()
                .map_err(build_err)?;
            let balance_field = if pending { "pending" } else { "available" };
            let balance = self.balance_update(&pk, &credit.currency, &[(balance_field, -share)])?;
            let month = self.month_add(&pk, &credit, -share)?;
            let event = Envelope::new(EventType::RebateReversed, correlation_id, &now, &reduction)?;
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(mark).build(),
                TransactWriteItem::builder().update(balance).build(),
                TransactWriteItem::builder().update(month).build(),
                TransactWriteItem::builder()
                    .put(crate::outbox::put(&event, &self.tables.events)?)
                    .build(),
                TransactWriteItem::builder().put(marker.put(&now)?).build(),
            ];
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => return Ok(Reversal::Reduced(Box::new(reduction))),
                Transact::Cancelled(reasons) => reasons,
            };
            let done_before = reasons.first().is_some_and(condition_failed)
                || reasons.last().is_some_and(condition_failed);
            if done_before {
                return Ok(Reversal::AlreadyDone);
            }
            // The credit moved (released, or another request's share taken):
            // read it again.
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(DbError::Unavailable(format!(
            "reversing request {request_id}'s lines kept conflicting"
        )))
    }

    // --------------------------------------------------------- settlement

    /// Schedules the release of what a completed order earned: its pending
    /// credit and the pending reductions of it get `availableAt` (the
    /// after-sales window's close) and join the release sweep's index.
    /// With no credit yet (the completion overtook `OrderPaid`), a
    /// `SETTLE#` marker keeps the time for the credit; the marker is written
    /// only while there is no credit, and a credit made without the time
    /// only while there is no marker, so one of the two always sees the
    /// other. The credit's update is conditional on it being as read (a
    /// reduction added meanwhile is read again and scheduled too).
    pub async fn settle(
        &self,
        order: &Order,
        available_at: &str,
        marker: &ProcessedMarker,
    ) -> Result<Settled, DbError> {
        let pk = user_pk(&order.user_id);
        let shard = crate::due_index::shard_of(&order.order_id);
        'attempt: for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                backoff(attempt - 1).await;
            }
            let entries = self.order_entries(&pk, &order.order_id).await?;
            let now = clock::now_rfc3339();
            let Some((_, credit)) = entries
                .iter()
                .find(|(sk, _)| *sk == credit_sk(&order.order_id))
            else {
                let items =
                    self.settle_before_credit(&pk, &order.order_id, available_at, marker)?;
                let reasons = match transact(&self.client, items).await? {
                    Transact::Committed => return Ok(Settled::BeforeCredit),
                    Transact::Cancelled(reasons) => reasons,
                };
                if reasons.first().is_some_and(condition_failed)
                    || reasons.last().is_some_and(condition_failed)
                {
                    return Ok(Settled::AlreadyDone);
                }
                // The credit arrived meanwhile: schedule it instead.
                continue;
            };
            match settlement(credit) {
                Settlement::Settled => return Ok(Settled::Nothing),
                Settlement::AlreadyScheduled => return Ok(Settled::AlreadyDone),
                Settlement::Schedule => {}
            }
            let reductions: Vec<&(String, LedgerEntry)> = entries
                .iter()
                .filter(|(sk, entry)| {
                    *sk != credit_sk(&order.order_id) && settlement(entry) == Settlement::Schedule
                })
                .collect();
            // Reductions beyond one transaction go first, each conditional
            // on itself: scheduling one twice is impossible, and the credit
            // (last) is what says the order is settled.
            let mut chunks = reductions.chunks(SCHEDULES_PER_TRANSACTION).rev();
            let last = chunks.next().unwrap_or_default();
            let schedules = |chunk: &[&(String, LedgerEntry)]| {
                chunk
                    .iter()
                    .map(|(sk, _)| self.schedule(&pk, sk, &shard, available_at, &now))
                    .collect::<Result<Vec<_>, _>>()
            };
            for chunk in chunks.rev() {
                if let Transact::Cancelled(_) = transact(&self.client, schedules(chunk)?).await? {
                    continue 'attempt;
                }
            }
            let mut items = schedules(last)?;
            let credit_as_read = self
                .update(&pk, &credit_sk(&order.order_id))
                .update_expression(
                    "SET availableAt = :availableAt, releaseShard = :shard, updatedAt = :now",
                )
                .condition_expression(
                    "#status = :pending AND attribute_not_exists(availableAt) AND (attribute_not_exists(reversedAmount) OR reversedAmount = :before)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":pending", s(EntryStatus::Pending.as_str()))
                .expression_attribute_values(":availableAt", s(available_at))
                .expression_attribute_values(":shard", s(&shard))
                .expression_attribute_values(":before", n(credit.reversed_amount))
                .expression_attribute_values(":now", s(&now))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(credit_as_read).build());
            items.push(TransactWriteItem::builder().put(marker.put(&now)?).build());
            match transact(&self.client, items).await? {
                Transact::Committed => return Ok(Settled::Scheduled(reductions.len() + 1)),
                Transact::Cancelled(reasons) if reasons.last().is_some_and(condition_failed) => {
                    return Ok(Settled::AlreadyDone);
                }
                // The credit or a reduction moved (reversed, reduced, or
                // scheduled by a redelivery): read them again.
                Transact::Cancelled(_) => {}
            }
        }
        Err(DbError::Unavailable(format!(
            "settling order {} kept conflicting",
            order.order_id
        )))
    }

    /// No credit yet: the marker the credit reads its release time from,
    /// written only while there is no credit; then the consumer's marker.
    fn settle_before_credit(
        &self,
        pk: &str,
        order_id: &str,
        available_at: &str,
        marker: &ProcessedMarker,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let now = clock::now_rfc3339();
        let settle = Put::builder()
            .table_name(&self.tables.rebates)
            .item("pk", s(pk))
            .item("sk", s(&settle_sk(order_id)))
            .item("availableAt", s(available_at))
            .item("completedAt", s(&now))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let no_credit = ConditionCheck::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(pk))
            .key("sk", s(&credit_sk(order_id)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        Ok(vec![
            TransactWriteItem::builder().put(settle).build(),
            TransactWriteItem::builder()
                .condition_check(no_credit)
                .build(),
            TransactWriteItem::builder().put(marker.put(&now)?).build(),
        ])
    }

    /// Gives one pending, unscheduled entry its release time.
    fn schedule(
        &self,
        pk: &str,
        sk: &str,
        shard: &str,
        available_at: &str,
        now: &str,
    ) -> Result<TransactWriteItem, DbError> {
        let update = self
            .update(pk, sk)
            .update_expression(
                "SET availableAt = :availableAt, releaseShard = :shard, updatedAt = :now",
            )
            .condition_expression("#status = :pending AND attribute_not_exists(availableAt)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(EntryStatus::Pending.as_str()))
            .expression_attribute_values(":availableAt", s(available_at))
            .expression_attribute_values(":shard", s(shard))
            .expression_attribute_values(":now", s(now))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One order's ledger entries with their sort keys (the credit, its
    /// clawback, its reductions).
    async fn order_entries(
        &self,
        pk: &str,
        order_id: &str,
    ) -> Result<Vec<(String, LedgerEntry)>, DbError> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.rebates)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(&order_entries_prefix(order_id)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(DbError::from)?;
            for item in out.items.unwrap_or_default() {
                let sk = match item.get("sk") {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => return Err(DbError::Corrupt("a ledger entry without its key".into())),
                };
                entries.push((sk, serde_dynamo::from_item(item)?));
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(entries);
            }
        }
    }

    // ------------------------------------------------------------ release

    /// Makes every pending entry whose release time (its order's completion
    /// plus the after-sales window) passed by `now` available. Safe to run concurrently with itself and with reversals:
    /// each move is conditional on the entry still being `PENDING`. Asks
    /// `must_stop` before each entry (the caller knows its deadline); each
    /// move is whole, so stopping leaves what was done done.
    pub async fn release_due(
        &self,
        now: OffsetDateTime,
        must_stop: impl Fn() -> bool,
    ) -> Result<ReleaseReport, DbError> {
        let now_text = clock::rfc3339(now);
        let mut report = ReleaseReport::default();
        let index = DueIndex {
            table: &self.tables.rebates,
            index: RELEASE_INDEX,
            shard_attribute: "releaseShard",
            due_attribute: "availableAt",
        };
        for item in index.due(&self.client, &now_text).await? {
            if must_stop() {
                report.stopped_early = true;
                return Ok(report);
            }
            let sk = match item.get("sk") {
                Some(AttributeValue::S(sk)) => sk.clone(),
                _ => return Err(DbError::Corrupt("a ledger entry without its key".into())),
            };
            let entry: LedgerEntry = serde_dynamo::from_item(item)?;
            if self.release(&entry, &sk).await? {
                report.released += 1;
            } else {
                report.already_settled += 1;
            }
        }
        Ok(report)
    }

    /// Moves one pending entry (a credit, or a reduction of one, whose
    /// amount is negative) to the available balance.
    async fn release(&self, entry: &LedgerEntry, sk: &str) -> Result<bool, DbError> {
        let pk = user_pk(&entry.user_id);
        let now = clock::now_rfc3339();
        let update = self
            .update(&pk, sk)
            .update_expression("SET #status = :available, updatedAt = :now REMOVE releaseShard")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":available", s(EntryStatus::Available.as_str()))
            .expression_attribute_values(":pending", s(EntryStatus::Pending.as_str()))
            .expression_attribute_values(":now", s(&now))
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .update(self.balance_update(
                    &pk,
                    &entry.currency,
                    &[("pending", -entry.amount), ("available", entry.amount)],
                )?)
                .build(),
        ];
        match transact(&self.client, items).await? {
            Transact::Committed => Ok(true),
            Transact::Cancelled(reasons) if reasons.first().is_some_and(condition_failed) => {
                Ok(false)
            }
            Transact::Cancelled(reasons) => Err(DbError::Unavailable(format!(
                "releasing {} conflicted: {reasons:?}",
                entry.entry_id
            ))),
        }
    }

    // -------------------------------------------------------------- reads

    /// The user's balances, one per currency they ever earned in (sorted by
    /// currency); the shop's default currency is always there, if only at 0.
    pub async fn balances(&self, user_id: &str) -> Result<Vec<Balance>, DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.rebates)
            .key_condition_expression("pk = :pk AND begins_with(sk, :balance)")
            .expression_attribute_values(":pk", s(&user_pk(user_id)))
            .expression_attribute_values(":balance", s("BALANCE"))
            .consistent_read(true)
            .send()
            .await?;
        let mut by_currency: std::collections::BTreeMap<String, Balance> = [(
            domain::money::default_currency(),
            Balance::zero(&domain::money::default_currency()),
        )]
        .into();
        for item in out.items.unwrap_or_default() {
            let found: Balance = serde_dynamo::from_item(item)?;
            let total = by_currency
                .entry(found.currency.clone())
                .or_insert_with(|| Balance::zero(&found.currency));
            total.pending += found.pending;
            total.available += found.available;
        }
        Ok(by_currency.into_values().collect())
    }

    /// The key attribute and value every one of `user_id`'s ledger keys
    /// holds: a page token must carry it (another user's is refused).
    pub fn ledger_owner(user_id: &str) -> (&'static str, String) {
        ("pk", user_pk(user_id))
    }

    /// A user's ledger, newest order first, from `start` (a key of a page
    /// of the same user's ledger).
    pub async fn entries(
        &self,
        user_id: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<LedgerEntry>, Option<Item>), DbError> {
        let pk = user_pk(user_id);
        let out = self
            .client
            .query()
            .table_name(&self.tables.rebates)
            .key_condition_expression("pk = :pk AND begins_with(sk, :entry)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":entry", s("ENTRY#"))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(DbError::from)?;
        let entries = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<LedgerEntry>, _>>()
            .map_err(DbError::from)?;
        Ok((entries, out.last_evaluated_key))
    }

    async fn entry(&self, pk: &str, sk: &str) -> Result<Option<LedgerEntry>, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rebates)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item.map(serde_dynamo::from_item).transpose()?)
    }

    // ------------------------------------------------------------ helpers

    fn entry_item(&self, entry: &LedgerEntry, sk: &str) -> Result<Item, DbError> {
        ledger_item(entry, sk)
    }

    fn balance_update(
        &self,
        pk: &str,
        currency: &str,
        changes: &[(&str, i64)],
    ) -> Result<Update, DbError> {
        let adds: Vec<String> = changes
            .iter()
            .map(|(name, _)| format!("{name} :{name}"))
            .collect();
        let mut update = self
            .update(pk, &balance_sk(currency))
            .update_expression(format!(
                "SET currency = if_not_exists(currency, :c) ADD {}",
                adds.join(", ")
            ))
            .expression_attribute_values(":c", s(currency));
        for (name, amount) in changes {
            update = update.expression_attribute_values(format!(":{name}"), n(*amount));
        }
        update.build().map_err(build_err)
    }

    fn month_decrement(&self, pk: &str, entry: &LedgerEntry) -> Result<Update, DbError> {
        self.month_add(pk, entry, -entry.amount)
    }

    /// Adds `delta` to what the user earned in `entry`'s month and currency.
    fn month_add(&self, pk: &str, entry: &LedgerEntry, delta: i64) -> Result<Update, DbError> {
        self.update(pk, &month_sk(&entry.month, &entry.currency))
            .update_expression("ADD earned :a")
            .expression_attribute_values(":a", n(delta))
            .build()
            .map_err(build_err)
    }
}

/// What [`Rebates::credit`] reads before it evaluates.
struct CreditInputs {
    rules: Option<(RebateRules, String)>,
    month_total: i64,
    /// Set when the order's completion was handled before its credit.
    available_at: Option<String>,
}

/// The pending credit an order earned; `available_at` only when the order
/// is already completed (else its completion sets it).
fn new_credit(
    order: &Order,
    evaluation: domain::rebates::Evaluation,
    currency: &str,
    month: &str,
    available_at: Option<String>,
) -> LedgerEntry {
    let now = clock::now_rfc3339();
    LedgerEntry {
        entry_id: format!("{}-1", order.order_id),
        user_id: order.user_id.clone(),
        order_id: order.order_id.clone(),
        withdrawal_id: None,
        kind: EntryKind::Credit,
        status: EntryStatus::Pending,
        amount: evaluation.amount,
        currency: currency.to_owned(),
        rules_version: evaluation.rules_version,
        lines: evaluation.lines,
        capped_by: evaluation.capped_by,
        month: month.to_owned(),
        created_at: now.clone(),
        updated_at: now,
        available_at,
        reversed_at: None,
        reversed_amount: 0,
    }
}

/// When a rules item was set (its `updatedAt`; empty if it has none).
fn updated_at(item: &Item) -> String {
    match item.get("updatedAt") {
        Some(AttributeValue::S(t)) => t.clone(),
        _ => String::new(),
    }
}

fn parse_rules(item: &Item) -> Result<RebateRules, DbError> {
    let Some(AttributeValue::S(document)) = item.get("document") else {
        return Err(DbError::Corrupt(
            "rebate rules item without document".into(),
        ));
    };
    serde_json::from_str(document).map_err(|e| DbError::Corrupt(format!("rebate rules: {e}")))
}

impl From<DbError> for RebateError {
    fn from(err: DbError) -> Self {
        RebateError::Store(err.into())
    }
}

/// A ledger entry as the rebates table holds it, under its user's key.
pub(crate) fn ledger_item(entry: &LedgerEntry, sk: &str) -> Result<Item, DbError> {
    let mut item: Item = serde_dynamo::to_item(entry)?;
    item.insert("pk".into(), s(&user_pk(&entry.user_id)));
    item.insert("sk".into(), s(sk));
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::rebates::Cap;
    use time::macros::datetime;

    #[test]
    fn months_are_utc() {
        assert_eq!(month_of(datetime!(2026-11-30 23:59:59 UTC)), "2026-11");
        assert_eq!(month_of(datetime!(2026-12-01 07:30 +08:00)), "2026-11");
        assert_eq!(month_of(datetime!(2027-01-01 00:00 UTC)), "2027-01");
    }

    #[test]
    fn credit_sorts_after_its_clawback_newest_first() {
        // Descending sort keys: an order's clawback shows above its credit.
        assert!(clawback_sk("01J") > credit_sk("01J"));
        assert!(credit_sk("01K") > clawback_sk("01J"));
    }

    #[test]
    fn entries_serialize_in_the_api_shape() {
        let entry = LedgerEntry {
            entry_id: "o-1".into(),
            user_id: "u".into(),
            order_id: "o".into(),
            withdrawal_id: None,
            kind: EntryKind::Credit,
            status: EntryStatus::Pending,
            amount: 150,
            currency: "CNY".into(),
            rules_version: 2,
            lines: Vec::new(),
            capped_by: Some(Cap::PerUserPerMonth),
            month: "2026-11".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
            available_at: Some("t2".into()),
            reversed_at: None,
            reversed_amount: 0,
        };
        let v = serde_json::to_value(&entry).unwrap();
        assert_eq!(v["status"], "PENDING");
        assert_eq!(v["kind"], "CREDIT");
        assert_eq!(v["cappedBy"], "PER_USER_PER_MONTH");
        assert!(v.get("reversedAt").is_none());
        let back: LedgerEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, entry);
    }
}
