//! The transactional outbox: every state change that others must learn of
//! writes its event into the events table in the same `TransactWriteItems`
//! as the change itself, so an event exists exactly when its change
//! committed. The publisher delivers the stored envelope verbatim;
//! consumers drop duplicates by `eventId` with a [`ProcessedMarker`].

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use domain::events::{Envelope, MAX_EVENT_BYTES};
use serde::Deserialize;

use crate::db::DbError;

/// The outbox record of `envelope`, for the same transaction as the change.
/// The event carries the X-Ray trace of the invocation that writes it.
pub fn put(envelope: &Envelope, table: &str) -> Result<Put, DbError> {
    let mut envelope = std::borrow::Cow::Borrowed(envelope);
    if envelope.trace_id.is_none() {
        // The runtime sets it for each invocation (absent outside Lambda).
        envelope.to_mut().trace_id = std::env::var("_X_AMZN_TRACE_ID").ok();
    }
    let json = serde_json::to_string(&*envelope).map_err(|e| DbError::Corrupt(e.to_string()))?;
    if json.len() > MAX_EVENT_BYTES {
        return Err(DbError::Corrupt(format!(
            "a {:?} event of {} bytes exceeds the {MAX_EVENT_BYTES} an event may take",
            envelope.event_type,
            json.len()
        )));
    }
    let event_type = serde_json::to_value(envelope.event_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Put::builder()
        .table_name(table)
        .item("eventId", AttributeValue::S(envelope.event_id.clone()))
        .item("type", AttributeValue::S(event_type))
        .item(
            "occurredAt",
            AttributeValue::S(envelope.occurred_at.clone()),
        )
        .item("envelope", AttributeValue::S(json))
        .condition_expression("attribute_not_exists(eventId)")
        .build()
        .map_err(|e| DbError::Other(e.to_string()))
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
        let expires = domain::clock::now().unix_timestamp() + 30 * 24 * 3600;
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::events::EventType;

    #[test]
    fn the_record_names_its_type() {
        let e = Envelope::new(EventType::OrderCreated, "c", "t", &serde_json::json!({})).unwrap();
        let put = put(&e, "events").unwrap();
        assert_eq!(put.item()["type"], AttributeValue::S("OrderCreated".into()));
    }

    /// Issue 28.1: an event SNS could never take is refused at the write.
    #[test]
    fn an_oversized_event_is_refused_at_the_write() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let e = Envelope::new(EventType::RebateCredited, "c", "t", &big).unwrap();
        assert!(matches!(put(&e, "events"), Err(DbError::Corrupt(_))));
    }
}
