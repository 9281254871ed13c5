//! Consumer of order events: daily sales aggregates. `OrderPaid` adds the
//! order to the day it was paid, per product and in the day's totals;
//! `OrderRefunded` subtracts it on the day of the refund. Each event counts
//! once (its marker commits with the aggregates).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use shared::consumer::{NotAnEnvelope, handle_batch};
use shared::events::{Envelope, EventType, ProcessedMarker};
use shared::order::Order;
use shared::sales::{SaleChange, Sales};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const CONSUMER: &str = "analytics";

pub struct AnalyticsConsumer {
    pub sales: Sales,
    pub markers_table: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    NotAnEnvelope(#[from] NotAnEnvelope),
    #[error("event data is not an order: {0}")]
    NotAnOrder(String),
    #[error("occurredAt is not an RFC 3339 time: {0}")]
    BadTime(String),
    #[error(transparent)]
    Db(#[from] shared::db::DbError),
}

impl AnalyticsConsumer {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), ConsumeError> {
        let change = match envelope.event_type {
            EventType::OrderPaid => SaleChange::Paid,
            EventType::OrderRefunded => SaleChange::Refunded,
            other => {
                tracing::warn!(
                    ?other,
                    "event type not for this consumer (check the subscription's filter policy)"
                );
                return Ok(());
            }
        };
        let order: Order = serde_json::from_value(envelope.data.clone())
            .map_err(|e| ConsumeError::NotAnOrder(e.to_string()))?;
        let day = OffsetDateTime::parse(&envelope.occurred_at, &Rfc3339)
            .map_err(|_| ConsumeError::BadTime(envelope.occurred_at.clone()))?
            .to_offset(time::UtcOffset::UTC)
            .date();
        let marker = ProcessedMarker::new(&self.markers_table, CONSUMER, &envelope.event_id);
        let counted = self.sales.record(&order, change, day, &marker).await?;
        tracing::info!(order_id = %order.order_id, ?change, counted, "sales recorded");
        Ok(())
    }
}
