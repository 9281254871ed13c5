//! The loop every queue consumer shares: decode each SQS message as an event
//! envelope, handle it, and report only the failed messages back to SQS
//! (`ReportBatchItemFailures`), so one bad message never fails its batch.
//! SQS redelivers a failed message until its queue's `maxReceiveCount`
//! moves it to the dead-letter queue.

use std::fmt::Display;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::Instrument;

use crate::events::Envelope;

/// The message body is not an event envelope: redelivery cannot help, so it
/// ends in the dead-letter queue for an operator.
#[derive(Debug, thiserror::Error)]
#[error("message is not an event envelope: {0}")]
pub struct NotAnEnvelope(pub String);

/// Why a consumer could not handle an event (SQS redelivers it; a message
/// that keeps failing ends in the queue's DLQ).
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    NotAnEnvelope(#[from] NotAnEnvelope),
    #[error("event data is not {expected}: {cause}")]
    BadData {
        expected: &'static str,
        cause: String,
    },
    #[error("occurredAt is not an RFC 3339 time: {0}")]
    BadTime(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl Envelope {
    /// The event's data as `T` (`expected` names it in the error).
    pub fn data_as<T: serde::de::DeserializeOwned>(
        &self,
        expected: &'static str,
    ) -> Result<T, ConsumeError> {
        serde_json::from_value(self.data.clone()).map_err(|e| ConsumeError::BadData {
            expected,
            cause: e.to_string(),
        })
    }

    /// When the change happened, UTC.
    pub fn occurred_at_time(&self) -> Result<time::OffsetDateTime, ConsumeError> {
        time::OffsetDateTime::parse(
            &self.occurred_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| ConsumeError::BadTime(self.occurred_at.clone()))
    }
}

pub fn envelope(message: &SqsMessage) -> Result<Envelope, NotAnEnvelope> {
    let body = message.body.as_deref().unwrap_or("");
    serde_json::from_str(body).map_err(|e| NotAnEnvelope(e.to_string()))
}

/// Runs `handle` on every message's envelope; the failures go back to SQS.
pub async fn handle_batch<F, Fut, E>(consumer: &str, event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display + From<NotAnEnvelope>,
{
    let mut response = SqsBatchResponse::default();
    for message in &event.records {
        let result = match envelope(message) {
            Ok(envelope) => {
                // Every log line of the handling carries the event's ids.
                let span = tracing::info_span!(
                    "event",
                    consumer,
                    event_id = %envelope.event_id,
                    event_type = ?envelope.event_type,
                    correlation_id = %envelope.correlation_id,
                );
                handle(envelope).instrument(span).await
            }
            Err(e) => Err(E::from(e)),
        };
        if let Err(error) = result {
            tracing::error!(consumer, message_id = ?message.message_id, %error, "event not processed; SQS will redeliver it");
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}
