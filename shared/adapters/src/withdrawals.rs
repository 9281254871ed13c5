//! The withdrawals table and the transactions that move a withdrawal and
//! the rebate balance together.
//!
//! - Requesting: one transaction puts the withdrawal, its `WITHDRAWAL`
//!   ledger entry (minus the amount, `AVAILABLE`), the balance's change
//!   (`available` down by the amount, conditional on covering it; the
//!   user's one slot in flight, `withdrawalInFlight`, taken; today's total,
//!   `withdrawnDay`/`withdrawnToday`, moved from the value read), the
//!   `WithdrawalRequested` event and the idempotency record. Racing
//!   requests of one user meet on the balance item: one commits.
//! - Paying (the payout consumer): the attempt is counted on the
//!   withdrawal before the provider is called, so a later attempt knows an
//!   earlier one may have reached the provider and asks it first; the
//!   provider's answer then finishes the withdrawal in one transaction.
//! - Finishing: `PAID` frees the slot; `FAILED` and `REJECTED` also reverse
//!   the entry and put the amount back in `available`. Each is conditional
//!   on the withdrawal's status, so a redelivery finishes it once.
//!
//! What was withdrawn today counts every withdrawal requested that day,
//! whatever became of it (see the README's decisions).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use domain::clock;
use domain::decisions::Decision;
use domain::error::StoreError;
use domain::events::{Envelope, EventType};
use domain::ids::new_id;
use domain::payments::ProviderError;
use domain::rebates::{EntryKind, EntryStatus, LedgerEntry};
use domain::withdrawals::{
    CURRENCY, PayoutOrder, PayoutProvider, PayoutState, Withdrawal, WithdrawalBody,
    WithdrawalError, WithdrawalPolicy, WithdrawalStatus, WithdrawalTransition, day_of,
};

use crate::config::Tables;
use crate::db::{
    DbError, Item, Read, Transact, backoff, build_err, condition_failed, conflicted, n, number, s,
    transact,
};
use crate::idempotency::{self, IdempotencyKey, StoredResponse};
use crate::rebates::{balance_sk, ledger_item, user_pk};

/// A user's withdrawals, newest first.
pub const USER_INDEX: &str = "byUser";
/// Withdrawals by status, oldest first (the admin's queue).
pub const STATUS_INDEX: &str = "byStatus";
/// The key attributes of a page token of each index.
pub const USER_INDEX_KEY: &[&str] = &["withdrawalId", "userId", "createdAt"];
pub const STATUS_INDEX_KEY: &[&str] = &["withdrawalId", "withdrawalStatus", "createdAt"];
const MAX_ATTEMPTS: u32 = 8;
/// The balance item `BALANCE` written before balances were per currency.
const UNSUFFIXED_BALANCE: &str = "BALANCE";

#[derive(Clone, Debug)]
pub struct Withdrawals {
    client: Client,
    tables: Tables,
    policy: WithdrawalPolicy,
}

pub enum Requested {
    Created(Box<Withdrawal>),
    /// The same request was made before with this Idempotency-Key.
    Replayed(StoredResponse),
}

/// What one payout attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payout {
    Paid(Box<Withdrawal>),
    Failed(Box<Withdrawal>),
    /// The provider has it and has not finished: ask again later.
    InProgress,
    /// Not `PROCESSING` (paid or failed already, or waiting for review).
    Nothing(WithdrawalStatus),
}

impl From<DbError> for WithdrawalError {
    fn from(err: DbError) -> Self {
        WithdrawalError::Store(err.into())
    }
}

impl From<idempotency::ReplayError> for WithdrawalError {
    fn from(err: idempotency::ReplayError) -> Self {
        match err {
            idempotency::ReplayError::Reused(reused) => WithdrawalError::KeyReused(reused),
            idempotency::ReplayError::Db(db) => db.into(),
        }
    }
}

/// The balance item as a withdrawal reads it.
#[derive(Debug, Default)]
struct BalanceRead {
    available: i64,
    in_flight: Option<String>,
    /// `withdrawnDay` and `withdrawnToday` as stored (the write's
    /// condition), whatever day they are of.
    day: Option<String>,
    stored_total: i64,
    /// What counts against today's cap: the stored total if it is today's.
    withdrawn: i64,
}

fn entry_sk(withdrawal_id: &str) -> String {
    format!("ENTRY#{withdrawal_id}#W")
}

impl Withdrawals {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            policy: WithdrawalPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: WithdrawalPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &WithdrawalPolicy {
        &self.policy
    }

    pub async fn get(&self, id: &str) -> Result<Option<Withdrawal>, DbError> {
        crate::db::get_item(
            &self.client,
            &self.tables.withdrawals,
            "withdrawalId",
            id,
            Read::Consistent,
        )
        .await
    }

    /// `id` if it is `user_id`'s: another user's is as absent as none.
    pub async fn get_owned(&self, id: &str, user_id: &str) -> Result<Withdrawal, WithdrawalError> {
        match self.get(id).await? {
            Some(w) if w.user_id == user_id => Ok(w),
            _ => Err(WithdrawalError::NotFound(id.to_owned())),
        }
    }

    pub async fn recorded_answer(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<StoredResponse>, WithdrawalError> {
        Ok(idempotency::recorded(&self.client, &self.tables.idempotency, key, fingerprint).await?)
    }

    // ---------------------------------------------------------- request

    /// Takes `body.amount` out of `user_id`'s available balance into a new
    /// withdrawal, `PROCESSING` or (above the review threshold)
    /// `PENDING_REVIEW`.
    pub async fn request(
        &self,
        user_id: &str,
        body: &WithdrawalBody,
        idempotency: Option<(IdempotencyKey, String)>,
    ) -> Result<Requested, WithdrawalError> {
        body.validate(&self.policy)?;
        self.fold_unsuffixed_balance(user_id).await?;
        for attempt in 1..=MAX_ATTEMPTS {
            let now = clock::now();
            let balance = self.read_balance(user_id, &day_of(now)).await?;
            let withdrawal = self.admissible(user_id, body, &balance, now)?;
            let items = self.request_items(&withdrawal, &balance, &idempotency, now)?;
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => return Ok(Requested::Created(Box::new(withdrawal))),
                Transact::Cancelled(reasons) => reasons,
            };
            if let Some((_, fingerprint)) = &idempotency
                && let Some(answer) = idempotency::replay_from(&reasons, fingerprint)
            {
                return Ok(Requested::Replayed(answer?));
            }
            // The balance moved since it was read (another withdrawal, a
            // release, a clawback): read it again, which names the rule a
            // racing request now breaks.
            if !reasons.first().is_some_and(condition_failed) && !conflicted(&reasons) {
                return Err(
                    DbError::Unavailable(format!("withdrawal cancelled: {reasons:?}")).into(),
                );
            }
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(WithdrawalError::Store(StoreError::Busy(
            "too many changes to this balance at once; try again",
        )))
    }

    /// The new withdrawal, if the balance as read allows it.
    fn admissible(
        &self,
        user_id: &str,
        body: &WithdrawalBody,
        balance: &BalanceRead,
        now: time::OffsetDateTime,
    ) -> Result<Withdrawal, WithdrawalError> {
        if let Some(id) = &balance.in_flight {
            return Err(WithdrawalError::InFlight(id.clone()));
        }
        if body.amount > balance.available {
            return Err(WithdrawalError::InsufficientBalance {
                amount: body.amount,
                available: balance.available,
            });
        }
        if balance.withdrawn + body.amount > self.policy.daily_cap {
            return Err(WithdrawalError::DailyCap {
                amount: body.amount,
                withdrawn: balance.withdrawn,
                cap: self.policy.daily_cap,
            });
        }
        let created_at = clock::rfc3339(now);
        Ok(Withdrawal {
            withdrawal_id: new_id(),
            user_id: user_id.to_owned(),
            amount: body.amount,
            currency: CURRENCY.to_owned(),
            channel: body.channel,
            account: body.account.clone(),
            account_name: body
                .account_name
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            withdrawal_status: self.policy.first_status(body.amount),
            updated_at: created_at.clone(),
            created_at,
            day: day_of(now),
            decided_at: None,
            decided_by: None,
            failure_reason: None,
            payout_attempts: 0,
            provider_reference: None,
            paid_at: None,
        })
    }

    async fn read_balance(&self, user_id: &str, today: &str) -> Result<BalanceRead, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rebates)
            .key("pk", s(&user_pk(user_id)))
            .key("sk", s(&balance_sk(CURRENCY)))
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = out.item else {
            return Ok(BalanceRead::default());
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        let day = text("withdrawnDay");
        let stored_total = number(&item, "withdrawnToday").unwrap_or(0);
        let withdrawn = if day.as_deref() == Some(today) {
            stored_total
        } else {
            0
        };
        Ok(BalanceRead {
            available: number(&item, "available").unwrap_or(0),
            in_flight: text("withdrawalInFlight"),
            day,
            stored_total,
            withdrawn,
        })
    }

    /// The balance change first (its condition is what a race breaks),
    /// the withdrawal, its entry, its event, the idempotency record last.
    fn request_items(
        &self,
        withdrawal: &Withdrawal,
        balance: &BalanceRead,
        idempotency: &Option<(IdempotencyKey, String)>,
        now: time::OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let now_text = clock::rfc3339(now);
        let pk = user_pk(&withdrawal.user_id);
        // Today's total moves from exactly what was read.
        let day_condition = match balance.day {
            Some(_) => "withdrawnDay = :readDay AND withdrawnToday = :readTotal",
            None => "attribute_not_exists(withdrawnDay)",
        };
        let mut update = Update::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(&pk))
            .key("sk", s(&balance_sk(CURRENCY)))
            .update_expression(
                "SET withdrawalInFlight = :id, withdrawnDay = :today, withdrawnToday = :total, updatedAt = :now ADD available :minus",
            )
            .condition_expression(format!(
                "available >= :amount AND attribute_not_exists(withdrawalInFlight) AND {day_condition}"
            ))
            .expression_attribute_values(":id", s(&withdrawal.withdrawal_id))
            .expression_attribute_values(":today", s(&withdrawal.day))
            .expression_attribute_values(":total", n(balance.withdrawn + withdrawal.amount))
            .expression_attribute_values(":now", s(&now_text))
            .expression_attribute_values(":minus", n(-withdrawal.amount))
            .expression_attribute_values(":amount", n(withdrawal.amount));
        if let Some(day) = &balance.day {
            update = update
                .expression_attribute_values(":readDay", s(day))
                .expression_attribute_values(":readTotal", n(balance.stored_total));
        }
        let put = Put::builder()
            .table_name(&self.tables.withdrawals)
            .set_item(Some(serde_dynamo::to_item(withdrawal)?))
            .condition_expression("attribute_not_exists(withdrawalId)")
            .build()
            .map_err(build_err)?;
        let entry = Put::builder()
            .table_name(&self.tables.rebates)
            .set_item(Some(ledger_item(
                &withdrawal_entry(withdrawal, &now_text),
                &entry_sk(&withdrawal.withdrawal_id),
            )?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let event = Envelope::new(
            EventType::WithdrawalRequested,
            &withdrawal.withdrawal_id,
            &now_text,
            withdrawal,
        )?;
        let mut items = vec![
            TransactWriteItem::builder()
                .update(update.build().map_err(build_err)?)
                .build(),
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().put(entry).build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ];
        if let Some((key, fingerprint)) = idempotency {
            let body = serde_json::to_string(withdrawal)?;
            let record = idempotency::record_put(
                &self.tables.idempotency,
                key,
                fingerprint,
                201,
                &body,
                now.unix_timestamp(),
            )?;
            items.push(TransactWriteItem::builder().put(record).build());
        }
        Ok(items)
    }

    /// Moves a `BALANCE` item from before balances were per currency into
    /// `BALANCE#CNY`, so that what the statement shows as available is
    /// what a withdrawal can take. Nothing when there is none.
    async fn fold_unsuffixed_balance(&self, user_id: &str) -> Result<(), DbError> {
        let pk = user_pk(user_id);
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rebates)
            .key("pk", s(&pk))
            .key("sk", s(UNSUFFIXED_BALANCE))
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = out.item else {
            return Ok(());
        };
        let currency = match item.get("currency") {
            Some(AttributeValue::S(c)) => c.clone(),
            _ => domain::money::default_currency(),
        };
        if currency != CURRENCY {
            return Ok(());
        }
        let (pending, available) = (
            number(&item, "pending").unwrap_or(0),
            number(&item, "available").unwrap_or(0),
        );
        let delete = Delete::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(&pk))
            .key("sk", s(UNSUFFIXED_BALANCE))
            .condition_expression(
                "(attribute_not_exists(pending) OR pending = :p) AND (attribute_not_exists(available) OR available = :a)",
            )
            .expression_attribute_values(":p", n(pending))
            .expression_attribute_values(":a", n(available))
            .build()
            .map_err(build_err)?;
        let add = Update::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(&pk))
            .key("sk", s(&balance_sk(CURRENCY)))
            .update_expression("SET currency = :c ADD pending :p, available :a")
            .expression_attribute_values(":c", s(CURRENCY))
            .expression_attribute_values(":p", n(pending))
            .expression_attribute_values(":a", n(available))
            .build()
            .map_err(build_err)?;
        // A cancellation means it moved meanwhile (a credit into it, or
        // another fold): the next withdrawal folds what is there then.
        transact(
            &self.client,
            vec![
                TransactWriteItem::builder().delete(delete).build(),
                TransactWriteItem::builder().update(add).build(),
            ],
        )
        .await?;
        Ok(())
    }

    // --------------------------------------------------------- decisions

    /// An admin's decision on a withdrawal under review. Deciding the same
    /// way again answers the withdrawal as it is; the other way, 409.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        reason: Option<String>,
        admin: &str,
    ) -> Result<Withdrawal, WithdrawalError> {
        let transition = match decision {
            Decision::Approve => WithdrawalTransition::Approve,
            Decision::Reject => WithdrawalTransition::Reject,
        };
        // A cancelled transaction means another decision, or the payout,
        // moved it (or only raced it): read it again and judge that.
        for attempt in 1..=MAX_ATTEMPTS {
            let current = self
                .get(id)
                .await?
                .ok_or_else(|| WithdrawalError::NotFound(id.to_owned()))?;
            let Ok(next) = current.withdrawal_status.apply(transition) else {
                return decided_already(current, transition);
            };
            let now = clock::now_rfc3339();
            let decided = Withdrawal {
                withdrawal_status: next,
                updated_at: now.clone(),
                decided_at: Some(now.clone()),
                decided_by: Some(admin.to_owned()),
                failure_reason: reason.clone(),
                ..current.clone()
            };
            let items = match decision {
                Decision::Approve => {
                    let event = Envelope::new(EventType::WithdrawalApproved, id, &now, &decided)
                        .map_err(DbError::from)?;
                    vec![
                        self.status_put(&decided, current.withdrawal_status)?,
                        TransactWriteItem::builder()
                            .put(crate::outbox::put(&event, &self.tables.events)?)
                            .build(),
                    ]
                }
                Decision::Reject => self.returning_items(
                    &decided,
                    current.withdrawal_status,
                    EventType::WithdrawalRejected,
                )?,
            };
            if let Transact::Committed = transact(&self.client, items).await? {
                return Ok(decided);
            }
            backoff(attempt).await;
        }
        Err(WithdrawalError::Store(StoreError::Busy(
            "too many changes to this withdrawal at once; try again",
        )))
    }

    // ------------------------------------------------------------ payout

    /// One payout attempt of withdrawal `id` through `provider`. An earlier
    /// attempt may have reached the provider (its answer lost): the
    /// provider is asked first, and the transfer sent only when it has
    /// none under this id. `Err` with `Unavailable` is an unknown outcome:
    /// the caller tries again later (the next attempt asks first).
    pub async fn pay(
        &self,
        id: &str,
        provider: &impl PayoutProvider,
    ) -> Result<Payout, WithdrawalError> {
        let Some(withdrawal) = self.get(id).await? else {
            return Err(WithdrawalError::NotFound(id.to_owned()));
        };
        if withdrawal.withdrawal_status != WithdrawalStatus::Processing {
            return Ok(Payout::Nothing(withdrawal.withdrawal_status));
        }
        let earlier_attempts = withdrawal.payout_attempts;
        self.count_attempt(&withdrawal).await?;
        let order = PayoutOrder::from(&withdrawal);
        let answer = if earlier_attempts > 0 {
            match provider.query_transfer(&order).await {
                Ok(Some(state)) => Ok(state),
                Ok(None) => provider.transfer(&order).await,
                Err(err) => Err(err),
            }
        } else {
            provider.transfer(&order).await
        };
        let state = match answer {
            Ok(state) => state,
            Err(ProviderError::Unavailable(why)) => {
                return Err(WithdrawalError::Store(StoreError::Unavailable(format!(
                    "payout provider: {why}"
                ))));
            }
            // A refusal of the request itself (the channel not configured
            // here, the provider rejecting our call): no money moved.
            Err(err) => PayoutState::Failed {
                reason: err.to_string(),
            },
        };
        match state {
            PayoutState::InProgress => Ok(Payout::InProgress),
            PayoutState::Paid { reference } => self.finish_paid(withdrawal, reference).await,
            PayoutState::Failed { reason } => self.finish_failed(withdrawal, reason).await,
        }
    }

    /// Counts the attempt on the withdrawal before the provider hears of
    /// it. Racing deliveries each count theirs (the provider pays one
    /// transfer per id whoever sends it).
    async fn count_attempt(&self, withdrawal: &Withdrawal) -> Result<(), WithdrawalError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.withdrawals)
            .key("withdrawalId", s(&withdrawal.withdrawal_id))
            .update_expression("ADD payoutAttempts :one SET updatedAt = :now")
            .condition_expression("withdrawalStatus = :processing")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&clock::now_rfc3339()))
            .expression_attribute_values(":processing", s(WithdrawalStatus::Processing.as_str()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = DbError::from(err);
                Err(err.into())
            }
        }
    }

    async fn finish_paid(
        &self,
        withdrawal: Withdrawal,
        reference: String,
    ) -> Result<Payout, WithdrawalError> {
        let now = clock::now_rfc3339();
        let paid = Withdrawal {
            withdrawal_status: WithdrawalStatus::Paid,
            updated_at: now.clone(),
            paid_at: Some(now.clone()),
            provider_reference: Some(reference),
            payout_attempts: withdrawal.payout_attempts + 1,
            ..withdrawal
        };
        let event = Envelope::new(EventType::WithdrawalPaid, &paid.withdrawal_id, &now, &paid)
            .map_err(DbError::from)?;
        let items = vec![
            self.status_put(&paid, WithdrawalStatus::Processing)?,
            TransactWriteItem::builder()
                .update(self.free_slot(&paid, 0, &now)?)
                .build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ];
        self.finish(paid, items, Payout::Paid).await
    }

    async fn finish_failed(
        &self,
        withdrawal: Withdrawal,
        reason: String,
    ) -> Result<Payout, WithdrawalError> {
        let now = clock::now_rfc3339();
        let failed = Withdrawal {
            withdrawal_status: WithdrawalStatus::Failed,
            updated_at: now,
            failure_reason: Some(reason),
            payout_attempts: withdrawal.payout_attempts + 1,
            ..withdrawal
        };
        let items = self.returning_items(
            &failed,
            WithdrawalStatus::Processing,
            EventType::WithdrawalFailed,
        )?;
        self.finish(failed, items, Payout::Failed).await
    }

    async fn finish(
        &self,
        finished: Withdrawal,
        items: Vec<TransactWriteItem>,
        outcome: fn(Box<Withdrawal>) -> Payout,
    ) -> Result<Payout, WithdrawalError> {
        match transact(&self.client, items).await? {
            Transact::Committed => Ok(outcome(Box::new(finished))),
            // Another delivery finished it first.
            Transact::Cancelled(reasons) if reasons.first().is_some_and(condition_failed) => {
                let now = self.get(&finished.withdrawal_id).await?;
                Ok(Payout::Nothing(
                    now.map_or(finished.withdrawal_status, |w| w.withdrawal_status),
                ))
            }
            Transact::Cancelled(reasons) => Err(DbError::Unavailable(format!(
                "finishing withdrawal {} cancelled: {reasons:?}",
                finished.withdrawal_id
            ))
            .into()),
        }
    }

    /// A rejection's or failure's transaction: the withdrawal in its new
    /// status, its entry reversed, the amount back in `available` with the
    /// slot freed, and the event.
    fn returning_items(
        &self,
        finished: &Withdrawal,
        from: WithdrawalStatus,
        event_type: EventType,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let now = finished.updated_at.clone();
        let entry = Update::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(&user_pk(&finished.user_id)))
            .key("sk", s(&entry_sk(&finished.withdrawal_id)))
            .update_expression("SET #status = :reversed, updatedAt = :now, reversedAt = :now")
            .condition_expression("#status = :available")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":reversed", s(EntryStatus::Reversed.as_str()))
            .expression_attribute_values(":available", s(EntryStatus::Available.as_str()))
            .expression_attribute_values(":now", s(&now))
            .build()
            .map_err(build_err)?;
        let event = Envelope::new(event_type, &finished.withdrawal_id, &now, finished)?;
        Ok(vec![
            self.status_put(finished, from)?,
            TransactWriteItem::builder().update(entry).build(),
            TransactWriteItem::builder()
                .update(self.free_slot(finished, finished.amount, &now)?)
                .build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ])
    }

    /// The withdrawal as it becomes, conditional on its status being `from`.
    fn status_put(
        &self,
        withdrawal: &Withdrawal,
        from: WithdrawalStatus,
    ) -> Result<TransactWriteItem, DbError> {
        let put = Put::builder()
            .table_name(&self.tables.withdrawals)
            .set_item(Some(serde_dynamo::to_item(withdrawal)?))
            .condition_expression("withdrawalStatus = :from")
            .expression_attribute_values(":from", s(from.as_str()))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Frees the user's slot in flight (held by this withdrawal) and puts
    /// `returned` back into `available`.
    fn free_slot(
        &self,
        withdrawal: &Withdrawal,
        returned: i64,
        now: &str,
    ) -> Result<Update, DbError> {
        Update::builder()
            .table_name(&self.tables.rebates)
            .key("pk", s(&user_pk(&withdrawal.user_id)))
            .key("sk", s(&balance_sk(&withdrawal.currency)))
            .update_expression(
                "REMOVE withdrawalInFlight SET updatedAt = :now ADD available :returned",
            )
            .condition_expression("withdrawalInFlight = :id")
            .expression_attribute_values(":id", s(&withdrawal.withdrawal_id))
            .expression_attribute_values(":returned", n(returned))
            .expression_attribute_values(":now", s(now))
            .build()
            .map_err(build_err)
    }

    // ----------------------------------------------------------- listing

    /// `user_id`'s withdrawals, newest first.
    pub async fn list_for_user(
        &self,
        user_id: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Withdrawal>, Option<Item>), DbError> {
        self.query(USER_INDEX, "userId", user_id, false, limit, start)
            .await
    }

    /// Withdrawals in `status`, oldest first (the admin's queue).
    pub async fn list_by_status(
        &self,
        status: WithdrawalStatus,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Withdrawal>, Option<Item>), DbError> {
        self.query(
            STATUS_INDEX,
            "withdrawalStatus",
            status.as_str(),
            true,
            limit,
            start,
        )
        .await
    }

    async fn query(
        &self,
        index: &str,
        attribute: &str,
        value: &str,
        oldest_first: bool,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Withdrawal>, Option<Item>), DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.withdrawals)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", attribute)
            .expression_attribute_values(":v", s(value))
            .scan_index_forward(oldest_first)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let withdrawals = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<Withdrawal>, _>>()?;
        Ok((withdrawals, out.last_evaluated_key))
    }
}

/// The ledger entry a withdrawal takes the amount out by.
fn withdrawal_entry(withdrawal: &Withdrawal, now: &str) -> LedgerEntry {
    LedgerEntry {
        entry_id: format!("{}-W", withdrawal.withdrawal_id),
        user_id: withdrawal.user_id.clone(),
        order_id: String::new(),
        withdrawal_id: Some(withdrawal.withdrawal_id.clone()),
        kind: EntryKind::Withdrawal,
        status: EntryStatus::Available,
        amount: -withdrawal.amount,
        currency: withdrawal.currency.clone(),
        rules_version: 0,
        lines: Vec::new(),
        capped_by: None,
        month: withdrawal.day[..7].to_owned(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        available_at: None,
        reversed_at: None,
        reversed_amount: 0,
    }
}

/// A decision that finds the withdrawal already moved: the same decision
/// again is answered with it as it is; anything else is refused.
fn decided_already(
    current: Withdrawal,
    transition: WithdrawalTransition,
) -> Result<Withdrawal, WithdrawalError> {
    let same = match transition {
        WithdrawalTransition::Reject => current.withdrawal_status == WithdrawalStatus::Rejected,
        // Approved, then paid or failed.
        _ => {
            current.decided_by.is_some() && current.withdrawal_status != WithdrawalStatus::Rejected
        }
    };
    if same {
        Ok(current)
    } else {
        Err(WithdrawalError::Forbidden {
            id: current.withdrawal_id,
            status: current.withdrawal_status,
            transition,
        })
    }
}
