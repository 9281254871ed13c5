//! The payments table and the transactions that start and settle payments.
//!
//! The order is never marked paid here: a settled payment writes its
//! `PaymentSucceeded`/`PaymentFailed` event in the same transaction, and the
//! order-status consumer moves the order (and its stock) when the event
//! arrives. A payment only starts while its order is payable, and an order
//! has at most one `PENDING` payment: both are conditions of the creating
//! transaction on the order item (`activePaymentId`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use domain::clock;
use domain::error::StoreError;
use domain::events::{Envelope, EventType};
use domain::ids::new_id;
use domain::orders::{Order, OrderStatus};
use domain::payments::{
    NotifiedResult, Payment, PaymentError, PaymentMethod, PaymentProvider, PaymentStatus,
    PaymentTransition, ProviderNotification, Refund, RefundOrder, RefundResult, RefundStatus,
    VerifiedCallback,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Tables;
use crate::db::{DbError, Transact, build_err, condition_failed, s, transact};
use crate::idempotency::{self, IdempotencyKey, ReplayError, StoredResponse};
use crate::metrics::Metric;
use crate::ratelimit::Throttled;

#[cfg(feature = "providers")]
pub mod alipay;
#[cfg(feature = "providers")]
pub mod http;
#[cfg(feature = "providers")]
pub mod keys;
#[cfg(feature = "providers")]
pub mod providers;
#[cfg(feature = "ssm")]
pub mod sandbox;
#[cfg(feature = "providers")]
pub mod stripe;
pub mod webhook_signature;
#[cfg(feature = "providers")]
pub mod wechatpay;

#[derive(Clone, Debug)]
pub struct Payments {
    client: Client,
    tables: Tables,
    /// Per-user limit on starting payments (none unless configured).
    rate_limit: Option<crate::ratelimit::RateLimit>,
    /// How long after creation a real provider's pending payment is first
    /// asked about ([`Payments::due_for_reconciliation`]).
    reconcile_after: time::Duration,
}

/// The sparse index of payments the reconciliation sweep asks their
/// provider about: only real providers' payments are in it (the sandbox
/// keeps no ledger to ask), from their creation until the sweep finds them
/// settled or closed at the provider.
pub const RECONCILE_INDEX: &str = "byReconcileAt";

/// What the reconciliation sweep does with a payment it asked about next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextCheck {
    /// Ask again at this time (RFC 3339).
    At(String),
    /// Settled or closed at the provider: out of the index.
    Never,
}

pub enum Initiation {
    Created(Payment),
    /// The order's pending payment with the same method: answered as is.
    Existing(Payment),
    Replayed(StoredResponse),
}

/// What a real provider's verified notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Genuine but about nothing we act on.
    Ignored,
    /// Recorded on its payment (applied, or a duplicate or mismatch kept).
    Recorded(CallbackOutcome),
    /// No payment of this provider has the id it names.
    UnknownPayment(String),
}

/// What a provider callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The payment moved to its final status and its event was written.
    Applied,
    /// The same result again: nothing changed.
    Duplicate,
    /// A different result for a payment already final: recorded only.
    Conflicting,
    /// Amount or currency differ from the payment: recorded, nothing paid.
    AmountMismatch,
    /// The callback names another order than the payment's: recorded only.
    OrderMismatch,
}

impl CallbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Applied => "APPLIED",
            CallbackOutcome::Duplicate => "DUPLICATE",
            CallbackOutcome::Conflicting => "CONFLICTING_RESULT",
            CallbackOutcome::AmountMismatch => "AMOUNT_MISMATCH",
            CallbackOutcome::OrderMismatch => "ORDER_MISMATCH",
        }
    }
}

/// The update that takes a `PENDING` payment to `EXPIRED` (conditional on
/// it still being pending), for the transaction that replaces it or that
/// ends its order.
pub(crate) fn expire_pending(table: &str, payment_id: &str, now: &str) -> Result<Update, DbError> {
    Update::builder()
        .table_name(table)
        .key("paymentId", s(payment_id))
        .update_expression("SET paymentStatus = :expired, updatedAt = :now")
        .condition_expression("paymentStatus = :pending")
        .expression_attribute_values(":expired", s(PaymentStatus::Expired.as_str()))
        .expression_attribute_values(":pending", s(PaymentStatus::Pending.as_str()))
        .expression_attribute_values(":now", s(now))
        .build()
        .map_err(build_err)
}

/// The status a verified callback moves `payment` to, or why it changes
/// nothing: another order or amount than the payment's (recorded only), the
/// same result again (a duplicate), or a failure after the money arrived
/// (the success is the truth about money: counted and kept for review).
fn applicable(
    payment: &Payment,
    notification: &ProviderNotification,
) -> Result<PaymentStatus, CallbackOutcome> {
    if notification.order_id != payment.order_id {
        return Err(CallbackOutcome::OrderMismatch);
    }
    if notification.amount != payment.amount || notification.currency != payment.currency {
        return Err(CallbackOutcome::AmountMismatch);
    }
    let transition = notification.transition();
    payment.payment_status.apply(transition).map_err(|_| {
        if payment.payment_status.reports(transition) {
            CallbackOutcome::Duplicate
        } else {
            crate::metrics::increment(Metric::PaymentResultsIgnored);
            CallbackOutcome::Conflicting
        }
    })
}

/// 409 unless the order can still take a payment now.
fn check_payable(order: &Order, now: OffsetDateTime) -> Result<(), PaymentError> {
    if !order.order_status.holds_reservation() {
        return Err(PaymentError::order_not_payable(
            order,
            "only unpaid orders can be paid",
        ));
    }
    let window_closed =
        OffsetDateTime::parse(&order.expires_at, &Rfc3339).map_or(true, |expires| expires <= now);
    if window_closed {
        return Err(PaymentError::order_not_payable(
            order,
            "its payment window has closed",
        ));
    }
    Ok(())
}

/// A new pending payment of the whole order, with its provider's checkout.
async fn new_payment(
    order: &Order,
    method: PaymentMethod,
    now: OffsetDateTime,
    provider: &impl PaymentProvider,
    callback_base: &str,
) -> Result<Payment, PaymentError> {
    let created_at = clock::rfc3339(now);
    let mut payment = Payment {
        payment_id: new_id(),
        order_id: order.order_id.clone(),
        user_id: order.user_id.clone(),
        amount: order.order_amount,
        currency: order.currency.clone(),
        payment_method: method,
        payment_status: PaymentStatus::Pending,
        payment_url: String::new(),
        qr_code: None,
        created_at: created_at.clone(),
        updated_at: created_at,
        // Never later than the order's own window.
        expires_at: order.expires_at.clone(),
        provider_transaction_id: None,
        failure_reason: None,
        provider: provider.name_for(method).to_owned(),
        provider_reference: None,
        refunds: Default::default(),
    };
    let checkout = provider.checkout(&payment, callback_base).await?;
    payment.payment_url = checkout.payment_url;
    payment.qr_code = checkout.qr_code;
    payment.provider_reference = checkout.provider_reference;
    Ok(payment)
}

impl Payments {
    /// Payments of real providers are asked about this long after creation
    /// if no notification settled them first.
    pub fn with_reconcile_after(mut self, after: time::Duration) -> Self {
        self.reconcile_after = after;
        self
    }

    /// Real providers' payments whose reconciliation is due at `now`.
    pub async fn due_for_reconciliation(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<Payment>, DbError> {
        let index = crate::due_index::DueIndex {
            table: &self.tables.payments,
            index: RECONCILE_INDEX,
            shard_attribute: "reconcileShard",
            due_attribute: "reconcileAt",
        };
        index
            .due(&self.client, &clock::rfc3339(now))
            .await?
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(DbError::from))
            .collect()
    }

    /// Records when the sweep asks about `payment` again, or takes it out of
    /// the index.
    pub async fn schedule_reconciliation(
        &self,
        payment_id: &str,
        next: NextCheck,
    ) -> Result<(), DbError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.payments)
            .key("paymentId", s(payment_id))
            .condition_expression("attribute_exists(paymentId)");
        let update = match next {
            NextCheck::At(at) => update
                .update_expression("SET reconcileAt = :at")
                .expression_attribute_values(":at", s(&at)),
            NextCheck::Never => update.update_expression("REMOVE reconcileShard, reconcileAt"),
        };
        update.send().await?;
        Ok(())
    }

    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            rate_limit: None,
            reconcile_after: time::Duration::minutes(2),
        }
    }

    pub fn with_rate_limit(mut self, limit: Option<crate::ratelimit::RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Takes one of the user's payment-start tokens: 429 when they are out.
    pub async fn take_rate_token(&self, user_id: &str) -> Result<(), PaymentError> {
        match &self.rate_limit {
            Some(limit) => limit
                .acquire(&self.client, user_id)
                .await
                .map_err(PaymentError::from),
            None => Ok(()),
        }
    }

    /// The answer already given to this Idempotency-Key, if any.
    pub async fn recorded_answer(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<StoredResponse>, PaymentError> {
        idempotency::recorded(&self.client, &self.tables.idempotency, key, fingerprint)
            .await
            .map_err(PaymentError::from)
    }

    pub async fn get(&self, payment_id: &str) -> Result<Option<Payment>, DbError> {
        crate::db::get_item(
            &self.client,
            &self.tables.payments,
            "paymentId",
            payment_id,
            crate::db::Read::Consistent,
        )
        .await
    }

    pub async fn get_owned(
        &self,
        payment_id: &str,
        user_id: &str,
    ) -> Result<Option<Payment>, DbError> {
        Ok(self.get(payment_id).await?.filter(|p| p.user_id == user_id))
    }

    /// Starts paying `order` with `method`: the order's pending payment with
    /// the same method if there is one; else a new payment, which replaces
    /// (expires) a pending one with another method.
    pub async fn initiate(
        &self,
        order: &Order,
        method: PaymentMethod,
        provider: &impl PaymentProvider,
        callback_base: &str,
        idempotency: Option<(IdempotencyKey, String)>,
    ) -> Result<Initiation, PaymentError> {
        let now = clock::now();
        check_payable(order, now)?;
        let active = self.active_pending(order).await?;
        let same_method = active.as_ref().filter(|a| a.payment_method == method);
        let payment = match (same_method, &idempotency) {
            (Some(pending), None) => return Ok(Initiation::Existing(pending.clone())),
            // With an Idempotency-Key the pending payment is recorded as this
            // key's answer, so the key replays it from now on.
            (Some(pending), Some(_)) => pending.clone(),
            (None, _) => new_payment(order, method, now, provider, callback_base).await?,
        };
        let reused = same_method.is_some();
        let transaction =
            self.initiation(order, &payment, reused, active.as_ref(), &idempotency, now)?;
        let reasons = match transact(&self.client, transaction).await? {
            Transact::Committed if reused => return Ok(Initiation::Existing(payment)),
            Transact::Committed => return Ok(Initiation::Created(payment)),
            Transact::Cancelled(reasons) => reasons,
        };
        if let Some((_, fingerprint)) = &idempotency
            && let Some(answer) = idempotency::replay_from(&reasons, fingerprint)
        {
            return Ok(Initiation::Replayed(answer?));
        }
        if !reasons.iter().any(condition_failed) {
            return Err(StoreError::Busy(
                "too many concurrent changes to this order; retry shortly",
            )
            .into());
        }
        // A racing request without a key started a payment with this same
        // method first: that is the pending payment the README promises
        // (200), not a conflict.
        if idempotency.is_none()
            && let Some(theirs) = self.pending_payment_of(&order.order_id).await?
            && theirs.payment_method == method
        {
            return Ok(Initiation::Existing(theirs));
        }
        // The order stopped being payable, or another payment started first:
        // the client may look again and retry.
        Err(PaymentError::OrderChanged {
            order_id: order.order_id.clone(),
        })
    }

    /// The order's active payment, if it is still pending.
    async fn active_pending(&self, order: &Order) -> Result<Option<Payment>, DbError> {
        let Some(id) = &order.active_payment_id else {
            return Ok(None);
        };
        Ok(self
            .get(id)
            .await?
            .filter(|p| p.payment_status == PaymentStatus::Pending))
    }

    /// The payment's transaction: the new payment, the order's claim on it
    /// and the expiry of the payment it replaces (none of which when the
    /// pending one is answered again), and the idempotency record, whose
    /// answer is as it was given: 200 for the pending payment, 201 for a new one.
    fn initiation(
        &self,
        order: &Order,
        payment: &Payment,
        reused: bool,
        active: Option<&Payment>,
        idempotency: &Option<(IdempotencyKey, String)>,
        now: OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let mut transaction = Vec::new();
        if !reused {
            let mut item: crate::db::Item = serde_dynamo::to_item(payment)?;
            if payment.provider != domain::payments::SANDBOX {
                item.insert(
                    "reconcileShard".into(),
                    s(&crate::due_index::shard_of(&payment.payment_id)),
                );
                item.insert(
                    "reconcileAt".into(),
                    s(&clock::rfc3339(now + self.reconcile_after)),
                );
            }
            let put = Put::builder()
                .table_name(&self.tables.payments)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(paymentId)")
                .build()
                .map_err(build_err)?;
            transaction.push(TransactWriteItem::builder().put(put).build());
            let claim = self.claim_order(order, payment, &payment.created_at)?;
            transaction.push(TransactWriteItem::builder().update(claim).build());
            if let Some(replaced) = active {
                let expire = expire_pending(
                    &self.tables.payments,
                    &replaced.payment_id,
                    &payment.created_at,
                )?;
                transaction.push(TransactWriteItem::builder().update(expire).build());
            }
        }
        if let Some((key, fingerprint)) = idempotency {
            let record = idempotency::record_put(
                &self.tables.idempotency,
                key,
                fingerprint,
                if reused { 200 } else { 201 },
                &serde_json::to_string(payment)?,
                now.unix_timestamp(),
            )?;
            transaction.push(TransactWriteItem::builder().put(record).build());
        }
        Ok(transaction)
    }

    /// The order's active payment as it is now, if it is pending.
    async fn pending_payment_of(&self, order_id: &str) -> Result<Option<Payment>, DbError> {
        let order: Option<Order> = crate::db::get_item(
            &self.client,
            &self.tables.orders,
            "orderId",
            order_id,
            crate::db::Read::Consistent,
        )
        .await?;
        let Some(active) = order.and_then(|o| o.active_payment_id) else {
            return Ok(None);
        };
        Ok(self
            .get(&active)
            .await?
            .filter(|p| p.payment_status == PaymentStatus::Pending))
    }

    /// Points the order at its new payment, if the order is still payable
    /// and still points where we read it.
    fn claim_order(&self, order: &Order, payment: &Payment, now: &str) -> Result<Update, DbError> {
        // Payable: the states that hold the order's reservation.
        let payable: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|status| status.holds_reservation())
            .collect();
        let (payable, values) = crate::orders::status_among(&payable);
        let mut update = Update::builder()
            .table_name(&self.tables.orders)
            .key("orderId", s(&order.order_id))
            .update_expression("SET activePaymentId = :new")
            // First: `set_` replaces the whole map, the calls below add to it.
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .expression_attribute_values(":new", s(&payment.payment_id))
            .expression_attribute_values(":now", s(now));
        let condition = format!("{payable} AND expiresAt > :now");
        update = match &order.active_payment_id {
            Some(previous) => update
                .condition_expression(format!("{condition} AND activePaymentId = :previous"))
                .expression_attribute_values(":previous", s(previous)),
            None => update.condition_expression(format!(
                "{condition} AND attribute_not_exists(activePaymentId)"
            )),
        };
        update.build().map_err(build_err)
    }

    /// Applies a real provider's verified notification: an ignored one is
    /// logged; a payment result is recorded on the payment it names, if that
    /// payment exists and is `provider`'s (else the provider should send it
    /// again later, or give up).
    pub async fn apply_notification(
        &self,
        provider: &str,
        callback: VerifiedCallback,
        correlation_id: &str,
    ) -> Result<NotificationOutcome, DbError> {
        let (notification_id, notification) = match callback {
            VerifiedCallback::Refund {
                notification_id,
                result,
            } => {
                return self
                    .apply_refund_result(provider, &notification_id, result)
                    .await;
            }
            VerifiedCallback::Ignored {
                notification_id,
                why,
            } => {
                tracing::info!(
                    provider,
                    notification_id,
                    why,
                    "notification acknowledged without effect"
                );
                return Ok(NotificationOutcome::Ignored);
            }
            VerifiedCallback::Payment {
                notification_id,
                notification,
            } => (notification_id, notification),
        };
        let Some(payment) = self
            .get(&notification.payment_id)
            .await?
            .filter(|p| p.provider == provider)
        else {
            return Ok(NotificationOutcome::UnknownPayment(notification.payment_id));
        };
        // Providers echo only their trade number: the order is the payment's.
        let notification = ProviderNotification {
            order_id: payment.order_id.clone(),
            ..notification
        };
        let outcome = self
            .record_callback(&payment, &notification, correlation_id)
            .await?;
        tracing::info!(
            provider,
            notification_id,
            payment_id = %payment.payment_id,
            outcome = outcome.as_str(),
            "notification recorded"
        );
        Ok(NotificationOutcome::Recorded(outcome))
    }

    /// Applies a verified provider callback to `payment` (read by the caller).
    /// Every callback leaves an audit record; only a first result for a
    /// pending payment changes it, together with its event.
    pub async fn record_callback(
        &self,
        payment: &Payment,
        notification: &ProviderNotification,
        correlation_id: &str,
    ) -> Result<CallbackOutcome, DbError> {
        let now = clock::now_rfc3339();
        let target = match applicable(payment, notification) {
            Ok(target) => target,
            Err(outcome) => {
                self.audit(payment, notification, outcome, &now).await?;
                return Ok(outcome);
            }
        };
        let transaction = self.settlement(payment, notification, target, correlation_id, &now)?;
        let reasons = match transact(&self.client, transaction).await? {
            Transact::Committed => {
                crate::metrics::increment(match notification.payment_status {
                    NotifiedResult::Success => Metric::PaymentsSucceeded,
                    NotifiedResult::Failed => Metric::PaymentsFailed,
                });
                return Ok(CallbackOutcome::Applied);
            }
            Transact::Cancelled(reasons) => reasons,
        };
        // A concurrent callback settled it first: judge again against what
        // it wrote.
        let current = reasons
            .first()
            .filter(|r| condition_failed(r))
            .and_then(|r| r.item())
            .and_then(|item| serde_dynamo::from_item::<_, Payment>(item.clone()).ok());
        match current {
            Some(current) if current.payment_status != payment.payment_status => {
                Box::pin(self.record_callback(&current, notification, correlation_id)).await
            }
            _ => Err(DbError::Unavailable(format!(
                "payment settlement kept conflicting: {reasons:?}"
            ))),
        }
    }

    /// The settlement's transaction: the payment's new status (conditional
    /// on the one it was judged from), its event, and the callback's audit
    /// record.
    fn settlement(
        &self,
        payment: &Payment,
        notification: &ProviderNotification,
        target: PaymentStatus,
        correlation_id: &str,
        now: &str,
    ) -> Result<Vec<TransactWriteItem>, DbError> {
        let settled = Payment {
            payment_status: target,
            updated_at: now.to_owned(),
            provider_transaction_id: Some(notification.provider_transaction_id.clone()),
            failure_reason: notification.failure_reason.clone(),
            ..payment.clone()
        };
        let event_type = if target == PaymentStatus::Succeeded {
            EventType::PaymentSucceeded
        } else {
            EventType::PaymentFailed
        };
        let event = Envelope::new(event_type, correlation_id, now, &settled)?;
        let settle = Update::builder()
            .table_name(&self.tables.payments)
            .key("paymentId", s(&payment.payment_id))
            // A success is final: the reconciliation sweep need not ask.
            .update_expression(if target == PaymentStatus::Succeeded {
                "SET paymentStatus = :to, updatedAt = :now, providerTransactionId = :tx, failureReason = :reason REMOVE reconcileShard, reconcileAt"
            } else {
                "SET paymentStatus = :to, updatedAt = :now, providerTransactionId = :tx, failureReason = :reason"
            })
            .condition_expression("paymentStatus = :from")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":from", s(payment.payment_status.as_str()))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":tx", s(&notification.provider_transaction_id))
            .expression_attribute_values(
                ":reason",
                notification.failure_reason.as_deref().map_or(AttributeValue::Null(true), s),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        let audit = self.audit_put(payment, notification, CallbackOutcome::Applied, now)?;
        Ok(vec![
            TransactWriteItem::builder().update(settle).build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
            TransactWriteItem::builder().put(audit).build(),
        ])
    }

    /// Returns a succeeded payment's money through the provider, then marks
    /// it `REFUNDED` with its `PaymentRefunded` event (the order-status
    /// consumer then refunds the order and restocks). Repeating it is safe:
    /// a payment already refunded is left alone.
    pub async fn refund(
        &self,
        payment: &Payment,
        provider: &impl PaymentProvider,
        reason: &str,
        correlation_id: &str,
    ) -> Result<Payment, PaymentError> {
        if payment.payment_status == PaymentStatus::Refunded {
            return Ok(payment.clone());
        }
        if payment
            .payment_status
            .apply(PaymentTransition::Refund)
            .is_err()
        {
            return Err(PaymentError::NotRefundable {
                payment_id: payment.payment_id.clone(),
                status: payment.payment_status,
            });
        }
        // Providers deduplicate refunds by payment, so a retry after a crash
        // between this call and the write below does not pay out twice.
        let order = RefundOrder::whole(payment, reason);
        let receipt = provider.refund(payment, &order).await?;
        let now = clock::now_rfc3339();
        let refund = Refund::accepted(&order, &receipt, &now);
        let mut refunded = Payment {
            payment_status: PaymentStatus::Refunded,
            updated_at: now.clone(),
            ..payment.clone()
        };
        refunded
            .refunds
            .insert(refund.refund_id.clone(), refund.clone());
        let event = Envelope::new(
            EventType::PaymentRefunded,
            correlation_id,
            &now,
            &serde_json::json!({
                "payment": refunded,
                "providerRefundId": receipt.provider_refund_id,
                "reason": reason,
            }),
        )
        .map_err(DbError::from)?;
        let update = Update::builder()
            .table_name(&self.tables.payments)
            .key("paymentId", s(&payment.payment_id))
            .update_expression(
                "SET paymentStatus = :refunded, updatedAt = :now, refunds = :refunds",
            )
            .condition_expression("paymentStatus = :succeeded")
            .expression_attribute_values(":refunded", s(PaymentStatus::Refunded.as_str()))
            .expression_attribute_values(":succeeded", s(PaymentStatus::Succeeded.as_str()))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(
                ":refunds",
                serde_dynamo::to_attribute_value(&refunded.refunds)
                    .map_err(|e| DbError::Corrupt(e.to_string()))?,
            )
            .build()
            .map_err(build_err)?;
        let transaction = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        ];
        match transact(&self.client, transaction).await? {
            Transact::Committed => Ok(refunded),
            // Refunded concurrently by another path: the same outcome.
            Transact::Cancelled(reasons) if reasons.first().is_some_and(condition_failed) => {
                Ok(refunded)
            }
            Transact::Cancelled(reasons) => {
                Err(DbError::Unavailable(format!("refund kept conflicting: {reasons:?}")).into())
            }
        }
    }

    fn audit_put(
        &self,
        payment: &Payment,
        notification: &ProviderNotification,
        outcome: CallbackOutcome,
        now: &str,
    ) -> Result<Put, DbError> {
        self.audit_record(payment, notification, outcome.as_str(), now)
    }

    /// The callbacks table's record of one verified notification about
    /// `payment`: what it said (`notification`) and what came of it.
    fn audit_record(
        &self,
        payment: &Payment,
        notification: &impl serde::Serialize,
        outcome: &str,
        now: &str,
    ) -> Result<Put, DbError> {
        let body =
            serde_json::to_string(notification).map_err(|e| DbError::Corrupt(e.to_string()))?;
        Put::builder()
            .table_name(&self.tables.payment_callbacks)
            .item("paymentId", s(&payment.payment_id))
            .item("receivedAt", s(&format!("{now}#{}", new_id())))
            .item("outcome", s(outcome))
            .item("paymentStatus", s(payment.payment_status.as_str()))
            .item("notification", s(&body))
            .build()
            .map_err(build_err)
    }

    /// A provider's later word on a refund it had accepted, applied once:
    /// the refund leaves `PENDING` by a write conditional on it, with its
    /// audit record; a resend, or another result for a refund already
    /// settled, is only recorded (`REFUND_DUPLICATE`,
    /// `REFUND_CONFLICTING_RESULT`). A refund this shop did not ask for (one
    /// made in the provider's dashboard) is acknowledged and logged.
    pub async fn apply_refund_result(
        &self,
        provider: &str,
        notification_id: &str,
        result: RefundResult,
    ) -> Result<NotificationOutcome, DbError> {
        let Some(payment) = self
            .get(&result.payment_id)
            .await?
            .filter(|p| p.provider == provider)
        else {
            return Ok(NotificationOutcome::UnknownPayment(result.payment_id));
        };
        let Some(refund) = payment.refunds.get(&result.refund_id) else {
            tracing::warn!(
                provider,
                notification_id,
                payment_id = %payment.payment_id,
                refund_id = %result.refund_id,
                "a refund this shop did not ask for: acknowledged without effect"
            );
            return Ok(NotificationOutcome::Ignored);
        };
        let now = clock::now_rfc3339();
        let outcome = match refund.refund_status {
            RefundStatus::Pending => self.settle_refund(&payment, &result, &now).await?,
            settled if settled == result.refund_status => CallbackOutcome::Duplicate,
            _ => CallbackOutcome::Conflicting,
        };
        if outcome != CallbackOutcome::Applied {
            self.put_audit(self.audit_record(&payment, &result, &refund_outcome(outcome), &now)?)
                .await?;
        }
        tracing::info!(
            provider,
            notification_id,
            payment_id = %payment.payment_id,
            refund_id = %result.refund_id,
            refund_status = result.refund_status.as_str(),
            outcome = refund_outcome(outcome),
            "refund result recorded"
        );
        Ok(NotificationOutcome::Recorded(outcome))
    }

    /// Moves a pending refund to its result, conditional on it still being
    /// pending: of racing copies, one applies; the others read what it
    /// wrote and are duplicates.
    async fn settle_refund(
        &self,
        payment: &Payment,
        result: &RefundResult,
        now: &str,
    ) -> Result<CallbackOutcome, DbError> {
        let settle = Update::builder()
            .table_name(&self.tables.payments)
            .key("paymentId", s(&payment.payment_id))
            .update_expression(
                "SET refunds.#refund.refundStatus = :to, refunds.#refund.settledAt = :now, refunds.#refund.failureReason = :reason, updatedAt = :now",
            )
            .condition_expression("refunds.#refund.refundStatus = :pending")
            .expression_attribute_names("#refund", &result.refund_id)
            .expression_attribute_values(":to", s(result.refund_status.as_str()))
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(
                ":reason",
                result.failure_reason.as_deref().map_or(AttributeValue::Null(true), s),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        let audit = self.audit_record(
            payment,
            result,
            &refund_outcome(CallbackOutcome::Applied),
            now,
        )?;
        let transaction = vec![
            TransactWriteItem::builder().update(settle).build(),
            TransactWriteItem::builder().put(audit).build(),
        ];
        match transact(&self.client, transaction).await? {
            Transact::Committed => {
                if result.refund_status == RefundStatus::Failed {
                    // Money the buyer is owed and did not get: an operator
                    // has to pay it by other means (RefundsFailedAlarm).
                    tracing::error!(
                        payment_id = %payment.payment_id,
                        refund_id = %result.refund_id,
                        reason = result.failure_reason.as_deref().unwrap_or(""),
                        "the provider could not pay a refund"
                    );
                    crate::metrics::increment(Metric::RefundsFailed);
                }
                Ok(CallbackOutcome::Applied)
            }
            Transact::Cancelled(reasons) if reasons.first().is_some_and(condition_failed) => {
                // A racing copy settled it first: what it wrote comes back
                // with the cancellation.
                let current = reasons[0]
                    .item()
                    .and_then(|item| serde_dynamo::from_item::<_, Payment>(item.clone()).ok())
                    .and_then(|p| p.refunds.get(&result.refund_id).cloned());
                Ok(match current {
                    Some(r) if r.refund_status == result.refund_status => {
                        CallbackOutcome::Duplicate
                    }
                    _ => CallbackOutcome::Conflicting,
                })
            }
            Transact::Cancelled(reasons) => Err(DbError::Unavailable(format!(
                "refund settlement kept conflicting: {reasons:?}"
            ))),
        }
    }

    async fn audit(
        &self,
        payment: &Payment,
        notification: &ProviderNotification,
        outcome: CallbackOutcome,
        now: &str,
    ) -> Result<(), DbError> {
        self.put_audit(self.audit_put(payment, notification, outcome, now)?)
            .await?;
        if outcome != CallbackOutcome::Duplicate {
            tracing::warn!(payment_id = %payment.payment_id, outcome = outcome.as_str(), "payment callback recorded without effect");
        }
        Ok(())
    }

    /// Writes an audit record on its own (not part of a transaction).
    async fn put_audit(&self, put: Put) -> Result<(), DbError> {
        self.client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .send()
            .await?;
        Ok(())
    }
}

/// A refund result's outcome as the callbacks table names it, apart from
/// the payment's own (`REFUND_APPLIED`, `REFUND_DUPLICATE`, ...).
fn refund_outcome(outcome: CallbackOutcome) -> String {
    format!("REFUND_{}", outcome.as_str())
}

impl From<DbError> for PaymentError {
    fn from(err: DbError) -> Self {
        PaymentError::Store(err.into())
    }
}

impl From<ReplayError> for PaymentError {
    fn from(err: ReplayError) -> Self {
        match err {
            ReplayError::Reused(reused) => reused.into(),
            ReplayError::Db(db) => db.into(),
        }
    }
}

impl From<Throttled> for PaymentError {
    fn from(err: Throttled) -> Self {
        match err {
            Throttled::Limited(limited) => limited.into(),
            Throttled::Store(store) => store.into(),
        }
    }
}
