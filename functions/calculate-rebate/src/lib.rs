//! Consumer of order events: the rebate ledger.
//!
//! - `OrderPaid`: credits what the order earns under the rules in force
//!   (one `PENDING` entry per order, whatever the redeliveries) and emits
//!   `RebateCredited`.
//! - `OrderRefunded` / `OrderCancelled`: reverses the order's rebate (a
//!   pending one becomes `REVERSED`, an available one gets a clawback) and
//!   emits `RebateReversed`. A refund that overtakes its `OrderPaid` voids
//!   the order, so the late credit never happens.
//! - `OrderCompleted`: the credit (and its pending reductions) gets its
//!   release time, the close of the after-sales window; until then it stays
//!   `PENDING` whatever the time. A completion that overtakes its
//!   `OrderPaid` leaves the time for the credit.
//! - `OrderLinesRefunded`: takes back the refunded lines' share of the
//!   credit (computed from the credit's own per-line figures, so under the
//!   rules version it used) by an entry of its own: pending with the credit,
//!   or from the available balance.
//!
//! Each effect commits with this consumer's marker for the event; a
//! redelivered event changes nothing.

use adapters::consumer::{ConsumeError, handle_batch};
use adapters::outbox::ProcessedMarker;
use adapters::rebates::Rebates;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use domain::events::{Envelope, EventType};
use domain::orders::Order;
use domain::rebates::{Credit, Reversal};
use domain::refund_requests::LinesRefunded;
use domain::refund_requests::window_closes;

pub const CONSUMER: &str = "calculate-rebate";

pub struct RebateConsumer {
    pub rebates: Rebates,
    pub markers_table: String,
    /// The after-sales window (`AfterSalesDays`): a completed order's rebate
    /// becomes available when it closes, as refund requests stop.
    pub after_sales: time::Duration,
}

impl RebateConsumer {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), ConsumeError> {
        // The type first: an event not for this consumer is not parsed.
        if !matches!(
            envelope.event_type,
            EventType::OrderPaid
                | EventType::OrderCompleted
                | EventType::OrderRefunded
                | EventType::OrderCancelled
                | EventType::OrderLinesRefunded
        ) {
            tracing::warn!(event_type = ?envelope.event_type, "event type not for this consumer (check the subscription's filter policy)");
            return Ok(());
        }
        let marker = ProcessedMarker::new(&self.markers_table, CONSUMER, &envelope.event_id);
        let correlation = envelope.correlation_id.as_str();
        if envelope.event_type == EventType::OrderLinesRefunded {
            let refund: LinesRefunded = envelope.data_as("an order and its refund request")?;
            let outcome = self
                .rebates
                .reverse_lines(&refund, &marker, correlation)
                .await?;
            let amount = match &outcome {
                Reversal::Reduced(entry) => entry.amount,
                _ => 0,
            };
            tracing::info!(order_id = %refund.order.order_id, refund_request_id = %refund.refund_request.refund_request_id, ?amount, "rebate of refunded lines");
            return Ok(());
        }
        let order: Order = envelope.data_as("an order")?;
        match envelope.event_type {
            EventType::OrderPaid => {
                let paid_at = envelope.occurred_at_time()?;
                match self
                    .rebates
                    .credit(&order, paid_at, &marker, correlation)
                    .await?
                {
                    Credit::Credited(entry) => {
                        tracing::info!(order_id = %order.order_id, amount = entry.amount, rules_version = entry.rules_version, capped_by = ?entry.capped_by, "rebate credited");
                    }
                    Credit::Nothing(why) => {
                        tracing::info!(order_id = %order.order_id, why, "no rebate")
                    }
                    Credit::AlreadyDone => {
                        tracing::info!(order_id = %order.order_id, "already credited")
                    }
                }
            }
            EventType::OrderCompleted => {
                // The order's own completion time; an event without one (it
                // cannot be, but a redriven old event might) counts from
                // when it happened.
                let completed_at = match &order.completed_at {
                    Some(at) => at.clone(),
                    None => envelope.occurred_at.clone(),
                };
                let available_at = window_closes(&completed_at, self.after_sales)
                    .map(domain::clock::rfc3339)
                    .ok_or(domain::events::EventError::BadTime(completed_at))?;
                let settled = self.rebates.settle(&order, &available_at, &marker).await?;
                tracing::info!(order_id = %order.order_id, %available_at, ?settled, "rebate settlement");
            }
            EventType::OrderRefunded | EventType::OrderCancelled => {
                // Only a paid order can still see an `OrderPaid` arrive late.
                let may_still_be_credited = envelope.event_type == EventType::OrderRefunded;
                let outcome = self
                    .rebates
                    .reverse(&order, may_still_be_credited, &marker, correlation)
                    .await?;
                let outcome = match outcome {
                    Reversal::Reversed(_) => "pending rebate reversed",
                    Reversal::ClawedBack(_) => "available rebate clawed back",
                    Reversal::Voided => "order voided before its credit",
                    Reversal::Nothing => "no rebate to reverse",
                    Reversal::AlreadyDone => "already reversed",
                    Reversal::Reduced(_) => "refunded lines' share taken back",
                };
                tracing::info!(order_id = %order.order_id, outcome, "rebate reversal");
            }
            // Returned above.
            _ => {}
        }
        Ok(())
    }
}
