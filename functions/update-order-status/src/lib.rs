//! Consumer of payment events: moves orders and their stock.
//!
//! - `PaymentSucceeded`: the order becomes `PAID` and each line's units move
//!   from `reserved` to `sold`. If the order can no longer take a payment
//!   (cancelled, expired, or paid by another payment), or the success was
//!   settled after the payment window and its grace, the money goes back:
//!   the payment is refunded.
//! - `PaymentFailed`: an unpaid order becomes `PAYMENT_FAILED`; its units
//!   stay reserved for a retry until cancel or expiry.
//! - `PaymentRefunded`: the order it paid becomes `REFUNDED` and its units
//!   return from `sold` to `stock`.
//!
//! Every change commits with this consumer's marker for the event, so a
//! redelivered event changes nothing; the order state machine decides what
//! late or out-of-order events may still do. One bad message fails only
//! itself (partial batch response); after 5 receives SQS moves it to the DLQ.

use adapters::consumer::{ConsumeError, handle_batch};
use adapters::orders::{Orders, Transition, TransitionContext};
use adapters::outbox::ProcessedMarker;
use adapters::payments::Payments;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use domain::events::{Envelope, EventType};
use domain::orders::{Order, OrderTransition};
use domain::payments::{Payment, PaymentProvider};

pub const CONSUMER: &str = "update-order-status";

pub struct OrderStatusConsumer<P> {
    pub orders: Orders,
    pub payments: Payments,
    pub provider: P,
    pub markers_table: String,
}

impl<P: PaymentProvider> OrderStatusConsumer<P> {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), ConsumeError> {
        // PaymentRefunded carries {payment, providerRefundId, reason}.
        let payment: Payment = match envelope.event_type {
            EventType::PaymentRefunded => envelope.data_at("payment", "a refunded payment")?,
            _ => envelope.data_as("a payment")?,
        };
        let context = TransitionContext {
            payment_id: Some(payment.payment_id.clone()),
            marker: Some(ProcessedMarker::new(
                &self.markers_table,
                CONSUMER,
                &envelope.event_id,
            )),
            ..TransitionContext::default()
        };
        let correlation = envelope.correlation_id.as_str();
        let order = self
            .orders
            .get(&payment.order_id)
            .await?
            .ok_or_else(|| ConsumeError::Missing(format!("order {}", payment.order_id)))?;
        tracing::info!(event_id = %envelope.event_id, event_type = ?envelope.event_type, order_id = %order.order_id, "consuming");

        match envelope.event_type {
            EventType::PaymentSucceeded => {
                self.payment_succeeded(&order, &payment, &context, correlation)
                    .await
            }
            EventType::PaymentFailed => {
                // Only a pending order records the failure; any other state
                // means a later event already decided (out of order).
                self.orders
                    .apply_transition_with(
                        &order,
                        OrderTransition::PaymentFailed,
                        correlation,
                        &context,
                    )
                    .await?;
                Ok(())
            }
            EventType::PaymentRefunded => {
                if order.paid_payment_id.as_deref() == Some(payment.payment_id.as_str()) {
                    self.orders
                        .apply_transition_with(
                            &order,
                            OrderTransition::Refund,
                            correlation,
                            &context,
                        )
                        .await?;
                }
                // A refund of a payment that never paid this order (a late
                // or second success) leaves the order alone.
                Ok(())
            }
            other => {
                tracing::warn!(
                    ?other,
                    "event type not for this consumer (check the subscription's filter policy)"
                );
                Ok(())
            }
        }
    }

    async fn payment_succeeded(
        &self,
        order: &Order,
        payment: &Payment,
        context: &TransitionContext,
        correlation: &str,
    ) -> Result<(), ConsumeError> {
        // The event's payment is as it was settled: its updatedAt is when
        // the success reached us, which the late-payment rule judges.
        let in_time =
            order.takes_payment_settled_at(&payment.updated_at, self.orders.late_payment_grace());
        let outcome = if in_time {
            self.orders
                .apply_transition_with(
                    order,
                    OrderTransition::PaymentSucceeded,
                    correlation,
                    context,
                )
                .await?
        } else {
            tracing::warn!(order_id = %order.order_id, payment_id = %payment.payment_id, settled_at = %payment.updated_at, expires_at = %order.expires_at, "success settled after the payment window and its grace");
            Transition::LostRace(Some(order.order_status))
        };
        match outcome {
            Transition::Applied(_) | Transition::AlreadyProcessed => Ok(()),
            Transition::LostRace(_) => {
                // The order cannot take this payment. Unless it was this very
                // payment that paid it — whatever the order became since
                // (shipped, completed: a redelivered success finds it there)
                // — the customer gets the money back.
                let current = self
                    .orders
                    .get(&order.order_id)
                    .await?
                    .unwrap_or_else(|| order.clone());
                if current.paid_payment_id.as_deref() == Some(&payment.payment_id) {
                    return Ok(());
                }
                let latest = self
                    .payments
                    .get(&payment.payment_id)
                    .await?
                    .unwrap_or_else(|| payment.clone());
                tracing::warn!(order_id = %order.order_id, payment_id = %payment.payment_id, status = ?current.order_status, "payment for an order that cannot take it: refunding");
                self.payments
                    .refund(
                        &latest,
                        &self.provider,
                        "the order could no longer be paid",
                        correlation,
                    )
                    .await?;
                Ok(())
            }
        }
    }
}
