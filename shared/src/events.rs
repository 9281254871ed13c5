//! Domain events and the transactional outbox.
//!
//! Every state change that others must learn of writes its event into the
//! events table in the same `TransactWriteItems` as the change itself, so an
//! event exists exactly when its change committed. The publisher delivers
//! the stored envelope verbatim; consumers drop duplicates by `eventId`.

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use serde::{Deserialize, Serialize};

use crate::db::DbError;

/// Version of the envelope and data shapes below; bumped on breaking change.
pub const EVENT_VERSION: u32 = 1;

/// The largest envelope the outbox takes: SNS takes 256 KiB with the
/// message attributes, and the events table's item must fit too. What goes
/// into events is bounded (20 lines, 50 campaigns a rule set) far below;
/// this refuses, at the write, anything that would still exceed it, rather
/// than commit an event that can never be delivered.
pub const MAX_EVENT_BYTES: usize = 240 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    OrderCreated,
    OrderPaid,
    OrderPaymentFailed,
    OrderCancelled,
    OrderExpired,
    OrderRefunded,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    RebateCredited,
    RebateReversed,
}

/// `{eventId, type, version, occurredAt, correlationId, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub version: u32,
    pub occurred_at: String,
    pub correlation_id: String,
    /// The X-Ray trace of the invocation that wrote the event, so that a
    /// consumer's logs lead back to the request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub data: serde_json::Value,
}

impl Envelope {
    pub fn new(
        event_type: EventType,
        correlation_id: &str,
        occurred_at: &str,
        data: &impl Serialize,
    ) -> Result<Self, DbError> {
        Ok(Self {
            event_id: crate::ids::new_id(),
            event_type,
            version: EVENT_VERSION,
            occurred_at: occurred_at.to_owned(),
            correlation_id: correlation_id.to_owned(),
            // The runtime sets it for each invocation (absent outside Lambda).
            trace_id: std::env::var("_X_AMZN_TRACE_ID").ok(),
            data: serde_json::to_value(data).map_err(|e| DbError::Corrupt(e.to_string()))?,
        })
    }

    /// The outbox record, for the same transaction as the change.
    pub fn outbox_put(&self, table: &str) -> Result<Put, DbError> {
        let json = serde_json::to_string(self).map_err(|e| DbError::Corrupt(e.to_string()))?;
        if json.len() > MAX_EVENT_BYTES {
            return Err(DbError::Corrupt(format!(
                "a {:?} event of {} bytes exceeds the {MAX_EVENT_BYTES} an event may take",
                self.event_type,
                json.len()
            )));
        }
        let event_type = serde_json::to_value(self.event_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Put::builder()
            .table_name(table)
            .item("eventId", AttributeValue::S(self.event_id.clone()))
            .item("type", AttributeValue::S(event_type))
            .item("occurredAt", AttributeValue::S(self.occurred_at.clone()))
            .item("envelope", AttributeValue::S(json))
            .condition_expression("attribute_not_exists(eventId)")
            .build()
            .map_err(|e| DbError::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let e = Envelope::new(
            EventType::OrderCreated,
            "corr-1",
            "2026-11-22T00:00:00Z",
            &serde_json::json!({"orderId": "o1"}),
        )
        .unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "OrderCreated");
        assert_eq!(v["version"], 1);
        assert_eq!(v["correlationId"], "corr-1");
        assert_eq!(v["data"]["orderId"], "o1");
        assert_eq!(v["eventId"].as_str().unwrap().len(), 26);
        let put = e.outbox_put("events").unwrap();
        assert_eq!(put.item()["type"], AttributeValue::S("OrderCreated".into()));
    }

    /// Issue 28.1: an event SNS could never take is refused at the write.
    #[test]
    fn an_oversized_event_is_refused_at_the_write() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let e = Envelope::new(EventType::RebateCredited, "c", "t", &big).unwrap();
        assert!(matches!(e.outbox_put("events"), Err(DbError::Corrupt(_))));
    }
}

/// An outbox item as the table's stream shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRecord {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The envelope's JSON, published verbatim.
    pub envelope: String,
}

/// "Consumer C has processed event E", written in the same transaction as
/// C's effect, on the condition that it is not there yet: a redelivered
/// event then cancels the transaction instead of acting twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedMarker {
    pub table: String,
    pub key: String,
}

impl ProcessedMarker {
    pub fn new(table: &str, consumer: &str, event_id: &str) -> Self {
        Self {
            table: table.to_owned(),
            key: format!("{consumer}#{event_id}"),
        }
    }

    pub fn put(&self, now: &str) -> Result<Put, DbError> {
        // Kept well past any redelivery (SQS keeps messages 4 days, DLQs 14).
        let expires = crate::clock::now().unix_timestamp() + 30 * 24 * 3600;
        Put::builder()
            .table_name(&self.table)
            .item("markerId", AttributeValue::S(self.key.clone()))
            .item("processedAt", AttributeValue::S(now.to_owned()))
            .item("expiresAtEpoch", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(markerId)")
            .build()
            .map_err(|e| DbError::Other(e.to_string()))
    }
}
