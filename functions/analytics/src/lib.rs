//! Consumer of order events: daily sales aggregates. `OrderPaid` adds the
//! order to the day it was paid, per product and in the day's totals;
//! `OrderRefunded` subtracts it on the day of the refund, and
//! `OrderLinesRefunded` only the refunded lines. Each event counts once
//! (its marker commits with the aggregates).

use adapters::consumer::{ConsumeError, handle_batch};
use adapters::outbox::ProcessedMarker;
use adapters::sales::Sales;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use domain::events::{Envelope, EventType};
use domain::orders::Order;
use domain::refund_requests::LinesRefunded;
use domain::sales::SaleChange;

pub const CONSUMER: &str = "analytics";

pub struct AnalyticsConsumer {
    pub sales: Sales,
    pub markers_table: String,
}

impl AnalyticsConsumer {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), ConsumeError> {
        let (order, change) = match envelope.event_type {
            EventType::OrderPaid => {
                let order: Order = envelope.data_as("an order")?;
                let change = SaleChange::paid(&order);
                (order, change)
            }
            EventType::OrderRefunded => {
                let order: Order = envelope.data_as("an order")?;
                let change = SaleChange::refunded(&order);
                (order, change)
            }
            EventType::OrderLinesRefunded => {
                let refund: LinesRefunded = envelope.data_as("an order and its refund request")?;
                let change =
                    SaleChange::lines_refunded(&refund.order, &refund.refund_request.items);
                (refund.order, change)
            }
            other => {
                tracing::warn!(
                    ?other,
                    "event type not for this consumer (check the subscription's filter policy)"
                );
                return Ok(());
            }
        };
        let day = envelope.occurred_at_time()?.date();
        let marker = ProcessedMarker::new(&self.markers_table, CONSUMER, &envelope.event_id);
        let counted = self.sales.record(&order, &change, day, &marker).await?;
        tracing::info!(order_id = %order.order_id, event = ?envelope.event_type, counted, "sales recorded");
        Ok(())
    }
}
