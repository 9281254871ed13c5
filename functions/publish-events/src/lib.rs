//! Delivers the outbox to the domain events topic.
//!
//! The events table's stream invokes this with batches of new outbox items;
//! each envelope is published verbatim with its `type` as a message
//! attribute (the queues' filter policies select on it). A failed publish
//! fails the invocation (after the rest of the batch was attempted): Lambda
//! then retries the whole batch until every record is published, so nothing
//! committed is ever skipped. (A partial batch response would retry less,
//! but ministack 1.5.33 ignores it for stream mappings and would skip the
//! failed record; a function error behaves the same on AWS and in the
//! emulator.) Retries publish some records twice;
//! consumers drop duplicates by `eventId`.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_sns::types::MessageAttributeValue;
use shared::events::OutboxRecord;
pub use shared::faults::FaultHook;

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
    #[error("malformed outbox record: {0}")]
    Malformed(String),
}

/// Publishes a stream batch; the number of events published.
///
/// A failed record does not stop the others: the batch goes on, and fails
/// at the end, so one retry of the batch covers every record that failed in
/// it (stopping at the first failure would cost one whole-batch retry per
/// failing record, which under a backlog delays everything behind it).
/// Consumers do not depend on publication order: their state machines
/// decide what a late event may still do.
pub async fn publish_batch(publisher: &Publisher, event: Event) -> Result<usize, PublishError> {
    let mut published = 0;
    let mut first_failure = None;
    for record in event.records {
        // Outbox items are only ever inserted.
        if record.event_name != "INSERT" {
            continue;
        }
        match publish(publisher, &record).await {
            Ok(()) => published += 1,
            Err(PublishError::Malformed(cause)) => {
                // Retrying would block the stream behind a record no retry
                // can fix; the item stays in the events table, so log it
                // loudly (with its key) for an operator and go on.
                tracing::error!(%cause, keys = ?record.change.keys, "malformed outbox record skipped");
            }
            Err(retryable) => {
                tracing::warn!(error = %retryable, "publish failed; the stream retries the batch");
                first_failure.get_or_insert(retryable);
            }
        }
    }
    shared::metrics::count(shared::metrics::Metric::EventsPublished, published as u64);
    match first_failure {
        Some(failure) => Err(failure),
        None => Ok(published),
    }
}

async fn publish(publisher: &Publisher, record: &EventRecord) -> Result<(), PublishError> {
    let outbox: OutboxRecord = serde_dynamo::from_item(record.change.new_image.clone())
        .map_err(|e| PublishError::Malformed(e.to_string()))?;
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
        .map_err(|e| PublishError::Malformed(e.to_string()))?;
    publisher
        .sns
        .publish()
        .topic_arn(&publisher.topic_arn)
        .message(&outbox.envelope)
        .message_attributes("type", event_type)
        .send()
        .await
        .map_err(|e| PublishError::Retryable(format!("{e:?}")))?;
    tracing::info!(event_id = %outbox.event_id, event_type = %outbox.event_type, "event published");
    Ok(())
}
