//! Domain events: what happened, in the envelope every consumer reads.
//! How they are stored and delivered (the outbox) is the adapters' part.

use serde::{Deserialize, Serialize};

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
    OrderShipped,
    OrderCompleted,
    /// An approved refund request returned some lines' money:
    /// `{order, refundRequest}` (the order as it became).
    OrderLinesRefunded,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    RebateCredited,
    RebateReversed,
    /// A withdrawal was made: `PROCESSING` (its payout is due) or
    /// `PENDING_REVIEW`. Data: the withdrawal.
    WithdrawalRequested,
    /// An admin approved a withdrawal under review: its payout is due.
    WithdrawalApproved,
    WithdrawalRejected,
    WithdrawalPaid,
    /// The provider refused the payout; the amount is available again.
    WithdrawalFailed,
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
    /// A new event with a fresh id; `trace_id` is filled in by the outbox
    /// from the invocation that writes it.
    pub fn new(
        event_type: EventType,
        correlation_id: &str,
        occurred_at: &str,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_id: crate::ids::new_id(),
            event_type,
            version: EVENT_VERSION,
            occurred_at: occurred_at.to_owned(),
            correlation_id: correlation_id.to_owned(),
            trace_id: None,
            data: serde_json::to_value(data)?,
        })
    }

    /// The event's data as `T` (`expected` names it in the error).
    pub fn data_as<T: serde::de::DeserializeOwned>(
        &self,
        expected: &'static str,
    ) -> Result<T, EventError> {
        serde_json::from_value(self.data.clone()).map_err(|e| EventError::BadData {
            expected,
            cause: e.to_string(),
        })
    }

    /// The field `name` of the event's data as `T`.
    pub fn data_at<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<T, EventError> {
        let field = self.data.get(name).cloned().unwrap_or_default();
        serde_json::from_value(field).map_err(|e| EventError::BadData {
            expected,
            cause: e.to_string(),
        })
    }

    /// When the change happened, UTC.
    pub fn occurred_at_time(&self) -> Result<time::OffsetDateTime, EventError> {
        time::OffsetDateTime::parse(
            &self.occurred_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| EventError::BadTime(self.occurred_at.clone()))
    }
}

/// An event that does not say what its type promises.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event data is not {expected}: {cause}")]
    BadData {
        expected: &'static str,
        cause: String,
    },
    #[error("occurredAt is not an RFC 3339 time: {0}")]
    BadTime(String),
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
        assert!(e.occurred_at_time().is_ok());
    }
}
