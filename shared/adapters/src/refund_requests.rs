//! The refund requests table and the transactions that file and decide
//! requests.
//!
//! - Filing claims the lines' units on the order (`refundClaims`, per
//!   product) by a write conditional on the claims staying within what was
//!   bought, in the transaction that stores the request: racing requests on
//!   one line never claim more than it holds.
//! - Rejecting releases the claims with the request's move to `REJECTED`.
//! - Approving moves the request to `APPROVED`, asks the payment's provider
//!   for the refund with the request's id as the provider's refund id (a
//!   retry refunds once), then in one transaction: the request `REFUNDED`,
//!   the order `PARTIALLY_REFUNDED` or `REFUNDED` with its refunded units,
//!   the payment's refund, returned units back in stock, and the
//!   `OrderLinesRefunded` event.
//!
//! The order also carries `refundClaimedUnits`, the claims' sum (storage
//! only): a whole cancel of a paid order is conditional on it being zero.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use domain::clock;
use domain::events::{Envelope, EventType};
use domain::ids::new_id;
use domain::orders::{Order, OrderStatus, StockMove};
use domain::payments::{Payment, PaymentProvider, PaymentStatus, Refund, RefundOrder};
use domain::refund_requests::{
    LinesRefunded, NotRefundable, REFUNDABLE, RefundLine, RefundRequest, RefundRequestError,
    RefundRequestStatus, RefundRequestTransition, check_refundable, window_start,
};

use crate::config::Tables;
use crate::db::{
    DbError, Item, Read, Transact, backoff, build_err, condition_failed, conflicted, n, s, transact,
};
use crate::idempotency::{self, IdempotencyKey, StoredResponse};

/// A buyer's requests of an order, oldest first.
pub const ORDER_INDEX: &str = "byOrder";
/// Requests by status, oldest first (the admin's queue).
pub const STATUS_INDEX: &str = "byStatus";
/// The key attributes of a page token of each index.
pub const ORDER_INDEX_KEY: &[&str] = &["refundRequestId", "orderId", "createdAt"];
pub const STATUS_INDEX_KEY: &[&str] = &["refundRequestId", "requestStatus", "createdAt"];
const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone, Debug)]
pub struct RefundRequests {
    client: Client,
    tables: Tables,
    /// How long after completion an order takes requests (`AfterSalesDays`).
    after_sales: time::Duration,
}

/// What filing asked for, validated against the order.
pub struct Filing<'a> {
    pub order: &'a Order,
    pub lines: Vec<RefundLine>,
    pub reason: String,
    pub return_goods: bool,
    pub idempotency: Option<(IdempotencyKey, String)>,
}

pub enum Filed {
    Filed(Box<RefundRequest>),
    /// The same request was made before with this Idempotency-Key.
    Replayed(StoredResponse),
}

impl From<DbError> for RefundRequestError {
    fn from(err: DbError) -> Self {
        RefundRequestError::Store(err.into())
    }
}

impl From<idempotency::ReplayError> for RefundRequestError {
    fn from(err: idempotency::ReplayError) -> Self {
        match err {
            idempotency::ReplayError::Reused(reused) => reused.into(),
            idempotency::ReplayError::Db(db) => db.into(),
        }
    }
}

fn attribute(value: &impl serde::Serialize) -> Result<AttributeValue, DbError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| DbError::Corrupt(e.to_string()))
}

fn empty_map() -> AttributeValue {
    AttributeValue::M(Default::default())
}

/// The order as a cancelled write found it (`ALL_OLD`), if it came back.
fn order_in(reason: Option<&CancellationReason>) -> Option<Order> {
    reason
        .and_then(|r| r.item())
        .and_then(|item| serde_dynamo::from_item(item.clone()).ok())
}

impl RefundRequests {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            after_sales: domain::refund_requests::DEFAULT_AFTER_SALES,
        }
    }

    pub fn with_after_sales(mut self, after_sales: time::Duration) -> Self {
        self.after_sales = after_sales;
        self
    }

    pub fn after_sales(&self) -> time::Duration {
        self.after_sales
    }

    pub async fn get(&self, id: &str) -> Result<Option<RefundRequest>, DbError> {
        crate::db::get_item(
            &self.client,
            &self.tables.refund_requests,
            "refundRequestId",
            id,
            Read::Consistent,
        )
        .await
    }

    async fn order(&self, order_id: &str) -> Result<Order, RefundRequestError> {
        crate::db::get_item(
            &self.client,
            &self.tables.orders,
            "orderId",
            order_id,
            Read::Consistent,
        )
        .await?
        .ok_or_else(|| RefundRequestError::OrderNotFound(order_id.to_owned()))
    }

    /// Orders written before refund requests existed lack the claim maps
    /// that the conditional writes below update in place.
    async fn ensure_claim_maps(&self, order_id: &str) -> Result<(), DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.orders)
            .key("orderId", s(order_id))
            .update_expression(
                "SET refundClaims = if_not_exists(refundClaims, :m), refundedUnits = if_not_exists(refundedUnits, :m), refundedAmount = if_not_exists(refundedAmount, :z), refundClaimedUnits = if_not_exists(refundClaimedUnits, :z)",
            )
            .condition_expression("attribute_exists(orderId) AND attribute_not_exists(refundClaimedUnits)")
            .expression_attribute_values(":m", empty_map())
            .expression_attribute_values(":z", n(0))
            .send()
            .await;
        match result.map_err(DbError::from) {
            Ok(_) | Err(DbError::ConditionFailed) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The answer recorded for `key`, read before anything else: a retry
    /// gets the original answer whatever happened to the order since.
    pub async fn recorded_answer(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<StoredResponse>, RefundRequestError> {
        idempotency::recorded(&self.client, &self.tables.idempotency, key, fingerprint)
            .await
            .map_err(RefundRequestError::from)
    }

    /// Files a request: the request, its lines' claims on the order and
    /// the idempotency record, in one transaction. A line whose units other
    /// requests claimed meanwhile is 409 (`QuantityExceeded`).
    pub async fn file(
        &self,
        filing: Filing<'_>,
        user_id: &str,
    ) -> Result<Filed, RefundRequestError> {
        let order = filing.order;
        let now = clock::now();
        check_refundable(order, false, now, self.after_sales).map_err(|why| {
            RefundRequestError::NotRefundable {
                order_id: order.order_id.clone(),
                status: order.order_status,
                why,
            }
        })?;
        let payment_id = order.paid_payment_id.clone().ok_or_else(|| {
            RefundRequestError::Store(domain::error::StoreError::Failed(format!(
                "paid order {} without its payment",
                order.order_id
            )))
        })?;
        self.ensure_claim_maps(&order.order_id).await?;
        let created_at = clock::rfc3339(now);
        let request = RefundRequest {
            refund_request_id: new_id(),
            order_id: order.order_id.clone(),
            user_id: user_id.to_owned(),
            payment_id,
            amount: filing.lines.iter().map(|l| l.amount).sum(),
            items: filing.lines,
            currency: order.currency.clone(),
            reason: filing.reason,
            return_goods: filing.return_goods,
            request_status: RefundRequestStatus::Requested,
            created_at: created_at.clone(),
            updated_at: created_at,
            decided_at: None,
            decided_by: None,
            decision_reason: None,
            provider_refund_id: None,
            restocked: false,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let items = self.filing(&request, order, &filing.idempotency, now)?;
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => return Ok(Filed::Filed(Box::new(request))),
                Transact::Cancelled(reasons) => reasons,
            };
            if let Some((_, fingerprint)) = &filing.idempotency
                && let Some(answer) = idempotency::replay_from(&reasons, fingerprint)
            {
                return Ok(Filed::Replayed(answer?));
            }
            if reasons.first().is_some_and(condition_failed) {
                let current = match order_in(reasons.first()) {
                    Some(current) => current,
                    None => self.order(&order.order_id).await?,
                };
                return Err(why_not_filed(&request, &current, now, self.after_sales));
            }
            if !conflicted(&reasons) {
                return Err(DbError::Unavailable(format!("filing cancelled: {reasons:?}")).into());
            }
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(RefundRequestError::Store(domain::error::StoreError::Busy(
            "too many changes to this order at once; try again",
        )))
    }

    /// The filing transaction: the order's claims first (`why_not_filed`
    /// reads its cancellation), the request, the idempotency record last.
    fn filing(
        &self,
        request: &RefundRequest,
        order: &Order,
        idempotency: &Option<(IdempotencyKey, String)>,
        now: time::OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let (statuses, values) = crate::orders::status_among(&REFUNDABLE);
        let mut sets = vec!["refundClaimedUnits = refundClaimedUnits + :units".to_owned()];
        let mut conditions = vec![
            statuses,
            "attribute_not_exists(refundRequestedAt)".to_owned(),
            "(attribute_not_exists(completedAt) OR completedAt > :windowStart)".to_owned(),
        ];
        let mut update = Update::builder()
            .table_name(&self.tables.orders)
            .key("orderId", s(&order.order_id))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(
                ":units",
                n(request.items.iter().map(|l| l.quantity).sum()),
            )
            .expression_attribute_values(":windowStart", s(&window_start(now, self.after_sales)));
        for (placeholder, value) in values {
            update = update.expression_attribute_values(placeholder, value);
        }
        update = name_lines(update, &request.items);
        for (i, line) in request.items.iter().enumerate() {
            let bought = order
                .items
                .iter()
                .find(|l| l.product_id == line.product_id)
                .map_or(0, |l| l.quantity);
            sets.push(format!(
                "refundClaims.#p{i} = if_not_exists(refundClaims.#p{i}, :zero) + :q{i}"
            ));
            conditions.push(format!(
                "(attribute_not_exists(refundClaims.#p{i}) OR refundClaims.#p{i} <= :max{i})"
            ));
            update =
                update.expression_attribute_values(format!(":max{i}"), n(bought - line.quantity));
        }
        let update = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        let put = Put::builder()
            .table_name(&self.tables.refund_requests)
            .set_item(Some(serde_dynamo::to_item(request)?))
            .condition_expression("attribute_not_exists(refundRequestId)")
            .build()
            .map_err(build_err)?;
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        if let Some((key, fingerprint)) = idempotency {
            let body = serde_json::to_string(request)?;
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

    /// Rejects a request with the admin's reason, releasing its claims in
    /// the same transaction. Rejecting a rejected request again is the same
    /// outcome; an approved or refunded one is `AlreadyDecided`.
    pub async fn reject(
        &self,
        id: &str,
        admin: &str,
        reason: &str,
    ) -> Result<RefundRequest, RefundRequestError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let request = self.decidable(id).await?;
            if request.request_status == RefundRequestStatus::Rejected {
                return Ok(request);
            }
            let now = clock::now_rfc3339();
            let rejected = RefundRequest {
                request_status: request
                    .request_status
                    .apply(RefundRequestTransition::Reject)
                    .map_err(|_| already_decided(&request))?,
                updated_at: now.clone(),
                decided_at: Some(now.clone()),
                decided_by: Some(admin.to_owned()),
                decision_reason: Some(reason.to_owned()),
                ..request.clone()
            };
            let items = vec![
                TransactWriteItem::builder()
                    .update(self.decision_update(&rejected, RefundRequestStatus::Requested)?)
                    .build(),
                TransactWriteItem::builder()
                    .update(self.release_claims(&request)?)
                    .build(),
            ];
            match transact(&self.client, items).await? {
                Transact::Committed => return Ok(rejected),
                // Decided meanwhile: read it again and answer from there.
                Transact::Cancelled(reasons) if reasons.first().is_some_and(condition_failed) => {}
                Transact::Cancelled(reasons) if conflicted(&reasons) => backoff(attempt).await,
                Transact::Cancelled(reasons) => {
                    tracing::error!(
                        refund_request_id = id,
                        ?reasons,
                        "claims below a pending request's units"
                    );
                    return Err(DbError::Corrupt(format!(
                        "order {} claims below request {id}",
                        request.order_id
                    ))
                    .into());
                }
            }
        }
        Err(RefundRequestError::Store(domain::error::StoreError::Busy(
            "too many changes to this request at once; try again",
        )))
    }

    /// The request, or why it does not exist.
    async fn decidable(&self, id: &str) -> Result<RefundRequest, RefundRequestError> {
        self.get(id)
            .await?
            .ok_or_else(|| RefundRequestError::NotFound(id.to_owned()))
    }

    /// The request's move to `decided.request_status`, conditional on it
    /// still being in `from`.
    fn decision_update(
        &self,
        decided: &RefundRequest,
        from: RefundRequestStatus,
    ) -> Result<Update, DbError> {
        let optional = |v: &Option<String>| v.as_deref().map_or(AttributeValue::Null(true), s);
        Update::builder()
            .table_name(&self.tables.refund_requests)
            .key("refundRequestId", s(&decided.refund_request_id))
            .update_expression(
                "SET requestStatus = :to, updatedAt = :now, decidedAt = :decidedAt, decidedBy = :by, decisionReason = :why, providerRefundId = :refund, restocked = :restocked",
            )
            .condition_expression("requestStatus = :from")
            .expression_attribute_values(":to", s(decided.request_status.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":now", s(&decided.updated_at))
            .expression_attribute_values(":decidedAt", optional(&decided.decided_at))
            .expression_attribute_values(":by", optional(&decided.decided_by))
            .expression_attribute_values(":why", optional(&decided.decision_reason))
            .expression_attribute_values(":refund", optional(&decided.provider_refund_id))
            .expression_attribute_values(":restocked", AttributeValue::Bool(decided.restocked))
            .build()
            .map_err(build_err)
    }

    fn release_claims(&self, request: &RefundRequest) -> Result<Update, DbError> {
        let lines = 0..request.items.len();
        let sets = std::iter::once("refundClaimedUnits = refundClaimedUnits - :units".to_owned())
            .chain(
                lines
                    .clone()
                    .map(|i| format!("refundClaims.#p{i} = refundClaims.#p{i} - :q{i}")),
            )
            .collect::<Vec<_>>();
        let conditions = lines
            .map(|i| format!("refundClaims.#p{i} >= :q{i}"))
            .collect::<Vec<_>>();
        let update = Update::builder()
            .table_name(&self.tables.orders)
            .key("orderId", s(&request.order_id))
            .expression_attribute_values(
                ":units",
                n(request.items.iter().map(|l| l.quantity).sum()),
            );
        name_lines(update, &request.items)
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .build()
            .map_err(build_err)
    }

    /// Approves a request and refunds its lines through the payment's
    /// provider. Safe to repeat at any point: the move to `APPROVED` is
    /// conditional, the provider refunds a refund id once, and the final
    /// transaction is conditional on the request still being `APPROVED`.
    /// A provider outage leaves the request `APPROVED` (the error says so);
    /// approving again finishes it.
    pub async fn approve(
        &self,
        id: &str,
        admin: &str,
        reason: Option<&str>,
        payments: &crate::payments::Payments,
        provider: &impl PaymentProvider,
        correlation_id: &str,
    ) -> Result<RefundRequest, RefundRequestError> {
        let approved = self.mark_approved(id, admin, reason).await?;
        if approved.request_status == RefundRequestStatus::Refunded {
            return Ok(approved);
        }
        let payment = payments.get(&approved.payment_id).await?.ok_or_else(|| {
            DbError::Corrupt(format!(
                "refund request {id} names a payment that does not exist"
            ))
        })?;
        let refund_order = RefundOrder {
            refund_id: approved.refund_request_id.clone(),
            amount: approved.amount,
            reason: approved.reason.clone(),
        };
        let receipt = provider.refund(&payment, &refund_order).await?;
        let now = clock::now_rfc3339();
        let refund = Refund::accepted(&refund_order, &receipt, &now);
        self.accept_refund(&approved, &payment, &refund, correlation_id)
            .await
    }

    /// Moves the request to `APPROVED` (or finds it there or `REFUNDED`).
    async fn mark_approved(
        &self,
        id: &str,
        admin: &str,
        reason: Option<&str>,
    ) -> Result<RefundRequest, RefundRequestError> {
        for _ in 0..3 {
            let request = self.decidable(id).await?;
            match request.request_status {
                RefundRequestStatus::Approved | RefundRequestStatus::Refunded => {
                    return Ok(request);
                }
                RefundRequestStatus::Rejected => return Err(already_decided(&request)),
                RefundRequestStatus::Requested => {}
            }
            let now = clock::now_rfc3339();
            let approved = RefundRequest {
                request_status: RefundRequestStatus::Approved,
                updated_at: now.clone(),
                decided_at: Some(now),
                decided_by: Some(admin.to_owned()),
                decision_reason: reason.map(str::to_owned),
                ..request
            };
            let update = self.decision_update(&approved, RefundRequestStatus::Requested)?;
            match transact(
                &self.client,
                vec![TransactWriteItem::builder().update(update).build()],
            )
            .await?
            {
                Transact::Committed => return Ok(approved),
                // Decided meanwhile (another admin): read it again.
                Transact::Cancelled(_) => {}
            }
        }
        Err(RefundRequestError::Store(domain::error::StoreError::Busy(
            "the request kept changing; try again",
        )))
    }

    /// The provider accepted the refund: the request, the order, the
    /// payment's refund, the returned units and the event, in one
    /// transaction conditional on the request still being `APPROVED` and
    /// the order's refunded amount being the one read (two approvals of one
    /// order's requests then cannot both think they are not the last).
    async fn accept_refund(
        &self,
        approved: &RefundRequest,
        payment: &Payment,
        refund: &Refund,
        correlation_id: &str,
    ) -> Result<RefundRequest, RefundRequestError> {
        self.ensure_refunds_map(&payment.payment_id).await?;
        for attempt in 1..=MAX_ATTEMPTS {
            let order = self.order(&approved.order_id).await?;
            let transition = approved.order_transition(&order);
            let target = order.next_status(transition).map_err(|e| {
                DbError::Corrupt(format!(
                    "refund request {} cannot refund order {}: {e}",
                    approved.refund_request_id, order.order_id
                ))
            })?;
            let restock = approved.restocks(&order);
            let now = clock::now_rfc3339();
            let refunded = RefundRequest {
                request_status: approved
                    .request_status
                    .apply(RefundRequestTransition::RefundAccepted)
                    .map_err(|_| already_decided(approved))?,
                updated_at: now.clone(),
                provider_refund_id: Some(refund.provider_refund_id.clone()),
                restocked: restock,
                ..approved.clone()
            };
            let mut updated = Order {
                order_status: target,
                updated_at: now.clone(),
                refunded_amount: order.refunded_amount + approved.amount,
                ..order.clone()
            };
            for line in &approved.items {
                *updated
                    .refunded_units
                    .entry(line.product_id.clone())
                    .or_insert(0) += line.quantity;
            }
            let mut items = vec![
                TransactWriteItem::builder()
                    .update(self.decision_update(&refunded, RefundRequestStatus::Approved)?)
                    .build(),
                TransactWriteItem::builder()
                    .update(self.order_refund(&order, &updated, approved, restock)?)
                    .build(),
                TransactWriteItem::builder()
                    .update(self.payment_refund(payment, refund, target, &now)?)
                    .build(),
            ];
            if restock {
                for line in &approved.items {
                    // The units after those refunded before go back to the
                    // shards they were sold from.
                    let refunded = order.refunded_units.get(&line.product_id).copied();
                    let units =
                        order.shard_units(&line.product_id, refunded.unwrap_or(0), line.quantity);
                    for update in crate::stock_shards::moves(
                        &self.tables,
                        StockMove::Restock,
                        &line.product_id,
                        &units,
                    )? {
                        items.push(TransactWriteItem::builder().update(update).build());
                    }
                }
            }
            let event = Envelope::new(
                EventType::OrderLinesRefunded,
                correlation_id,
                &now,
                &LinesRefunded {
                    order: updated,
                    refund_request: refunded.clone(),
                },
            )
            .map_err(DbError::from)?;
            items.push(
                TransactWriteItem::builder()
                    .put(crate::outbox::put(&event, &self.tables.events)?)
                    .build(),
            );
            let reasons = match transact(&self.client, items).await? {
                Transact::Committed => {
                    tracing::info!(refund_request_id = %approved.refund_request_id, order_id = %order.order_id, order_status = target.as_str(), amount = approved.amount, restock, "refund request refunded");
                    return Ok(refunded);
                }
                Transact::Cancelled(reasons) => reasons,
            };
            if reasons.first().is_some_and(condition_failed) {
                // A racing approval of the same request finished it.
                return self.decidable(&approved.refund_request_id).await;
            }
            let order_moved = reasons.get(1).is_some_and(condition_failed);
            if !order_moved && !conflicted(&reasons) {
                return Err(DbError::Unavailable(format!(
                    "refund of request {} cancelled: {reasons:?}",
                    approved.refund_request_id
                ))
                .into());
            }
            if !order_moved && attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(RefundRequestError::Store(domain::error::StoreError::Busy(
            "too many changes to this order at once; approve again",
        )))
    }

    /// Payments without refunds lack the map the refund is added to.
    async fn ensure_refunds_map(&self, payment_id: &str) -> Result<(), DbError> {
        self.client
            .update_item()
            .table_name(&self.tables.payments)
            .key("paymentId", s(payment_id))
            .update_expression("SET refunds = if_not_exists(refunds, :m)")
            .condition_expression("attribute_exists(paymentId)")
            .expression_attribute_values(":m", empty_map())
            .send()
            .await?;
        Ok(())
    }

    fn order_refund(
        &self,
        order: &Order,
        updated: &Order,
        request: &RefundRequest,
        restock: bool,
    ) -> Result<Update, DbError> {
        let mut sets = vec![
            "orderStatus = :to".to_owned(),
            "updatedAt = :now".to_owned(),
            "refundedAmount = refundedAmount + :amount".to_owned(),
        ];
        let mut conditions = vec![
            "orderStatus = :from".to_owned(),
            "refundedAmount = :read".to_owned(),
        ];
        // Units that go back because they never left must not have left
        // meanwhile (a shipment racing the approval).
        if restock && !request.return_goods {
            conditions.push("attribute_not_exists(shipment)".to_owned());
        }
        let update = Update::builder()
            .table_name(&self.tables.orders)
            .key("orderId", s(&order.order_id))
            .expression_attribute_values(":to", s(updated.order_status.as_str()))
            .expression_attribute_values(":from", s(order.order_status.as_str()))
            .expression_attribute_values(":now", s(&updated.updated_at))
            .expression_attribute_values(":amount", n(request.amount))
            .expression_attribute_values(":read", n(order.refunded_amount))
            .expression_attribute_values(":zero", n(0));
        sets.extend((0..request.items.len()).map(|i| {
            format!("refundedUnits.#p{i} = if_not_exists(refundedUnits.#p{i}, :zero) + :q{i}")
        }));
        // The last lines refunded: nothing is left to ship.
        let remove = if updated.order_status == OrderStatus::Refunded {
            " REMOVE shipShard"
        } else {
            ""
        };
        name_lines(update, &request.items)
            .update_expression(format!("SET {}{remove}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .build()
            .map_err(build_err)
    }

    /// The payment's record of the refund; the last lines' refund makes
    /// the payment `REFUNDED`.
    fn payment_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        target: OrderStatus,
        now: &str,
    ) -> Result<Update, DbError> {
        let whole = target == OrderStatus::Refunded;
        let status = if whole {
            ", paymentStatus = :refunded"
        } else {
            ""
        };
        let mut update = Update::builder()
            .table_name(&self.tables.payments)
            .key("paymentId", s(&payment.payment_id))
            .update_expression(format!(
                "SET refunds.#refund = :record, updatedAt = :now{status}"
            ))
            .condition_expression(
                "attribute_not_exists(refunds.#refund) AND paymentStatus = :succeeded",
            )
            .expression_attribute_names("#refund", &refund.refund_id)
            .expression_attribute_values(":record", attribute(refund)?)
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":succeeded", s(PaymentStatus::Succeeded.as_str()));
        if whole {
            update = update
                .expression_attribute_values(":refunded", s(PaymentStatus::Refunded.as_str()));
        }
        update.build().map_err(build_err)
    }

    /// An order's requests, oldest first.
    pub async fn list_for_order(
        &self,
        order_id: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<RefundRequest>, Option<Item>), DbError> {
        self.query(ORDER_INDEX, "orderId", order_id, limit, start)
            .await
    }

    /// Requests in `status`, oldest first (the admin's queue).
    pub async fn list_by_status(
        &self,
        status: RefundRequestStatus,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<RefundRequest>, Option<Item>), DbError> {
        self.query(STATUS_INDEX, "requestStatus", status.as_str(), limit, start)
            .await
    }

    async fn query(
        &self,
        index: &str,
        attribute: &str,
        value: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<RefundRequest>, Option<Item>), DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.refund_requests)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", attribute)
            .expression_attribute_values(":v", s(value))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let requests = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<RefundRequest>, _>>()?;
        Ok((requests, out.last_evaluated_key))
    }
}

/// Names line `i`'s product `#p{i}` and quantity `:q{i}`, for expressions
/// on the order's per-product maps (`refundClaims`, `refundedUnits`).
fn name_lines(mut update: UpdateBuilder, lines: &[RefundLine]) -> UpdateBuilder {
    for (i, line) in lines.iter().enumerate() {
        update = update
            .expression_attribute_names(format!("#p{i}"), &line.product_id)
            .expression_attribute_values(format!(":q{i}"), n(line.quantity));
    }
    update
}

fn already_decided(request: &RefundRequest) -> RefundRequestError {
    RefundRequestError::AlreadyDecided {
        id: request.refund_request_id.clone(),
        status: request.request_status,
    }
}

/// Why a filing's order condition failed, from the order as it is: its
/// status, a cancel, the window, or the first line other requests claimed.
fn why_not_filed(
    request: &RefundRequest,
    current: &Order,
    now: time::OffsetDateTime,
    after_sales: time::Duration,
) -> RefundRequestError {
    for (index, line) in request.items.iter().enumerate() {
        let claimable = current.claimable_units(&line.product_id);
        if claimable < line.quantity {
            return RefundRequestError::QuantityExceeded {
                index,
                product_id: line.product_id.clone(),
                claimable: claimable.max(0),
            };
        }
    }
    // Refundable by every fact the order struct carries: what refused is
    // the attribute it does not, a cancel's claim.
    let why = match check_refundable(current, false, now, after_sales) {
        Err(why) => why,
        Ok(()) => NotRefundable::Cancelling,
    };
    RefundRequestError::NotRefundable {
        order_id: current.order_id.clone(),
        status: current.order_status,
        why,
    }
}
