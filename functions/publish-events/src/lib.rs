//! Delivers the outbox to the domain events topic.
//!
//! The events table's stream invokes this with batches of new outbox items;
//! each envelope is published verbatim with its `type` as a message
//! attribute (the queues' filter policies select on it). Retries publish
//! some records twice; consumers drop duplicates by `eventId`.
//!
//! How a failed publish goes back to Lambda is the stage's
//! (`STREAM_FAILURES`, issue 26.5):
//! - `batch-item` (AWS): a partial batch response naming the first record
//!   that failed; the mapping retries from there, bisecting the batch, a
//!   bounded number of times, then records the batch's position in the
//!   on-failure queue and goes on. The record stays in the events table,
//!   and `scripts/republish-event` publishes it again. One record that
//!   always fails cannot stall its shard.
//! - `invocation` (the local stack): the invocation fails and the whole
//!   batch is retried until every record is published. ministack ignores
//!   partial batch responses for stream mappings and would skip the failed
//!   record, so there the conservative behaviour is the only correct one.
//!
//! A record no retry can fix (malformed, larger than SNS takes, or refused
//! by SNS as an invalid parameter) is set aside instead: logged with its
//! event id at ERROR, counted (`EventsSetAside`, which raises an alarm),
//! and left in the events table for an operator, while the stream goes on.
//! Retrying it would block every event behind it on its shard.

pub use adapters::faults::FaultHook;
use adapters::outbox::OutboxRecord;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_sns::types::MessageAttributeValue;

pub struct Publisher {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
    /// `FAULT_PUBLISH_EVERY` (test stacks only): fails the first publish
    /// of one event in N after its commit, the window the outbox must survive.
    pub faults: FaultHook,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Could be retried: SNS unavailable, throttled, or an injected fault.
    #[error("publish failed, the batch will be retried: {0}")]
    Retryable(String),
    /// The stored record cannot be published as it is; retrying cannot help.
    #[error("the outbox record cannot be published: {0}")]
    Unpublishable(String),
}

/// What SNS takes: 256 KiB for the message and its attributes together.
pub const SNS_MAX_MESSAGE_BYTES: usize = 262_144;

/// How this deployment hands a failed publish back to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReport {
    /// A partial batch response (`ReportBatchItemFailures`).
    BatchItem,
    /// A failed invocation: the whole batch again.
    Invocation,
}

impl FailureReport {
    /// `STREAM_FAILURES`: `batch-item` or `invocation` (the default, which
    /// never skips a record whatever the mapping says).
    pub fn from_env() -> Self {
        match std::env::var("STREAM_FAILURES").as_deref() {
            Ok("batch-item") => FailureReport::BatchItem,
            _ => FailureReport::Invocation,
        }
    }
}

/// Publishes a stream batch and reports its failures as `report` says: the
/// response for Lambda (naming the first failed record's sequence number
/// with `BatchItem`), or the failure itself with `Invocation`.
pub async fn publish_stream_batch(
    publisher: &Publisher,
    event: Event,
    report: FailureReport,
) -> Result<DynamoDbEventResponse, PublishError> {
    match (publish_all(publisher, event).await, report) {
        (None, _) => Ok(DynamoDbEventResponse::default()),
        (Some((sequence_number, _)), FailureReport::BatchItem) => {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number);
            let mut response = DynamoDbEventResponse::default();
            response.batch_item_failures = vec![failure];
            Ok(response)
        }
        (Some((_, failure)), FailureReport::Invocation) => Err(failure),
    }
}

/// Publishes every record of a batch; the sequence number of the first
/// record that failed (it and every record after it are retried), and why.
/// A failed record does not stop the
/// others, so one retry covers every record that failed in it (stopping at
/// the first failure would cost one retry per failing record, which under a
/// backlog delays everything behind it). Consumers do not depend on
/// publication order: their state machines decide what a late event may
/// still do.
async fn publish_all(publisher: &Publisher, event: Event) -> Option<(String, PublishError)> {
    let mut published = 0;
    let mut first_failure = None;
    for record in event.records {
        // Outbox items are only ever inserted.
        if record.event_name != "INSERT" {
            continue;
        }
        match publish(publisher, &record).await {
            Ok(()) => published += 1,
            Err(PublishError::Unpublishable(cause)) => {
                // Retrying would block the stream behind a record no retry
                // can fix; the item stays in the events table, so log it
                // loudly (with its key) for an operator and go on.
                tracing::error!(%cause, keys = ?record.change.keys, "outbox record set aside");
                adapters::metrics::increment(adapters::metrics::Metric::EventsSetAside);
            }
            Err(retryable) => {
                tracing::warn!(error = %retryable, "publish failed; the stream retries it");
                let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
                first_failure.get_or_insert((sequence_number, retryable));
            }
        }
    }
    adapters::metrics::count(adapters::metrics::Metric::EventsPublished, published as u64);
    first_failure
}

async fn publish(publisher: &Publisher, record: &EventRecord) -> Result<(), PublishError> {
    let outbox: OutboxRecord = serde_dynamo::from_item(record.change.new_image.clone())
        .map_err(|e| PublishError::Unpublishable(format!("malformed: {e}")))?;
    let size = outbox.envelope.len() + "type".len() + "String".len() + outbox.event_type.len();
    if size > SNS_MAX_MESSAGE_BYTES {
        return Err(PublishError::Unpublishable(format!(
            "event {} is {size} bytes; SNS takes at most {SNS_MAX_MESSAGE_BYTES}",
            outbox.event_id
        )));
    }
    if publisher.faults.should_fail(&outbox.event_id) {
        return Err(PublishError::Retryable(format!(
            "injected fault publishing {}",
            outbox.event_id
        )));
    }
    let event_type = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(&outbox.event_type)
        .build()
        .map_err(|e| PublishError::Unpublishable(e.to_string()))?;
    publisher
        .sns
        .publish()
        .topic_arn(&publisher.topic_arn)
        .message(&outbox.envelope)
        .message_attributes("type", event_type)
        .send()
        .await
        .map_err(|e| {
            // SNS refusing the message itself is final; anything else
            // (throttling, an outage, a missing permission being fixed)
            // may pass on a retry.
            let invalid = e.as_service_error().is_some_and(|e| {
                e.is_invalid_parameter_exception() || e.is_invalid_parameter_value_exception()
            });
            if invalid {
                PublishError::Unpublishable(format!("SNS refused event {}: {e:?}", outbox.event_id))
            } else {
                PublishError::Retryable(format!("{e:?}"))
            }
        })?;
    tracing::info!(event_id = %outbox.event_id, event_type = %outbox.event_type, "event published");
    Ok(())
}
