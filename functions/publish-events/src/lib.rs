//! Delivers the outbox to the domain events topic.
//!
//! The events table's stream invokes this with batches of new outbox items;
//! each envelope is published verbatim with its `type` as a message
//! attribute (the queues' filter policies select on it). A failed publish
//! fails the invocation: Lambda then retries the whole batch, in order, until
//! it is published, so nothing committed is ever skipped. (A partial batch
//! response would retry less, but ministack 1.5.33 ignores it for stream
//! mappings and would skip the failed record; a function error behaves the
//! same on AWS and in the emulator.) Retries publish some records twice;
//! consumers drop duplicates by `eventId`.

use std::collections::HashSet;
use std::sync::Mutex;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_sns::types::MessageAttributeValue;
use shared::events::OutboxRecord;

pub struct Publisher {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
    pub faults: FaultHook,
}

/// Test-only fault injection: with `FAULT_PUBLISH_EVERY=N` (N > 0) the
/// first attempt to publish one event in N (chosen by its id) fails, after
/// the event was committed: the crash window the outbox must survive. Each
/// chosen event fails once per container, so retries make progress. 0 (the
/// template's default) in every real environment.
#[derive(Debug, Default)]
pub struct FaultHook {
    every: u32,
    failed_once: Mutex<HashSet<String>>,
}

impl FaultHook {
    pub fn from_env() -> Self {
        Self::every(
            std::env::var("FAULT_PUBLISH_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    }

    pub fn every(every: u32) -> Self {
        Self {
            every,
            failed_once: Mutex::new(HashSet::new()),
        }
    }

    fn should_fail(&self, event_id: &str) -> bool {
        if self.every == 0 {
            return false;
        }
        let chosen = event_id
            .bytes()
            .map(u32::from)
            .sum::<u32>()
            .is_multiple_of(self.every);
        chosen
            && self
                .failed_once
                .lock()
                .is_ok_and(|mut failed| failed.insert(event_id.to_owned()))
    }
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
pub async fn publish_batch(publisher: &Publisher, event: Event) -> Result<usize, PublishError> {
    let mut published = 0;
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
                return Err(retryable);
            }
        }
    }
    Ok(published)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_each_chosen_event_once() {
        let hook = FaultHook::every(3);
        let ids: Vec<String> = (0..60).map(|i| format!("event-{i}")).collect();
        let first: Vec<bool> = ids.iter().map(|id| hook.should_fail(id)).collect();
        let chosen = first.iter().filter(|f| **f).count();
        assert!(chosen > 5 && chosen < 40, "about one in three: {chosen}");
        assert!(
            ids.iter().all(|id| !hook.should_fail(id)),
            "a retry succeeds"
        );
        assert!(!FaultHook::every(0).should_fail("event-0"));
    }
}
