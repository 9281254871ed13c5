//! The loop every queue consumer shares: decode each SQS message as an event
//! envelope, handle it, and report only the failed messages back to SQS
//! (`ReportBatchItemFailures`), so one bad message never fails its batch.
//! SQS redelivers a failed message until its queue's `maxReceiveCount`
//! moves it to the dead-letter queue.

use std::fmt::Display;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::Instrument;

use domain::events::Envelope;

/// The message body is not an event envelope: redelivery cannot help, so it
/// ends in the dead-letter queue for an operator.
#[derive(Debug, thiserror::Error)]
#[error("message is not an event envelope: {0}")]
pub struct NotAnEnvelope(pub String);

/// Why a consumer could not handle an event (SQS redelivers it; a message
/// that keeps failing ends in the queue's DLQ). One type for every consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    NotAnEnvelope(#[from] NotAnEnvelope),
    #[error(transparent)]
    BadEvent(#[from] domain::events::EventError),
    /// The event names something that is not there (yet): a retry may find it.
    #[error("{0} does not exist")]
    Missing(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Payment(#[from] domain::payments::PaymentError),
    #[error(transparent)]
    Withdrawal(#[from] domain::withdrawals::WithdrawalError),
}

/// The message's envelope, if it is one of the version this code reads: an
/// event of another version may mean anything (events/README: the version
/// is bumped on a breaking change), so it is never applied as if it were
/// ours; it fails, is counted, and ends in the DLQ for an operator.
pub fn envelope(message: &SqsMessage) -> Result<Envelope, NotAnEnvelope> {
    let body = message.body.as_deref().unwrap_or("");
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| NotAnEnvelope(e.to_string()))?;
    if envelope.version != domain::events::EVENT_VERSION {
        return Err(NotAnEnvelope(format!(
            "event {} has version {}; this consumer reads version {}",
            envelope.event_id,
            envelope.version,
            domain::events::EVENT_VERSION
        )));
    }
    Ok(envelope)
}

/// A failure that took this long was a timeout: a dependency is stalled
/// (normal handling takes milliseconds; the SDK gives up after its
/// attempt timeouts, 2 s each).
const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Test stacks only (`CONSUMER_CRASH_EVERY`, 0 in every real environment):
/// the consumer loses its acknowledgement of one event in N right after
/// handling it, on the event's first delivery, as if it had crashed between its
/// write and SQS's delete: the message goes back to SQS while the rest of
/// the batch carries on. The redelivered event must change nothing twice.
/// (Handing back the rest of the batch too would only add untried
/// redeliveries, and push innocent messages towards their DLQ.)
fn crash_hook() -> &'static crate::faults::FaultHook {
    static HOOK: std::sync::OnceLock<crate::faults::FaultHook> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| crate::faults::FaultHook::from_env("CONSUMER_CRASH_EVERY"))
}

/// Leave at least this long, or as long as the slowest message of the batch
/// took, to answer before the invocation's deadline.
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether there is no longer time to handle another message: a batch that
/// runs into its timeout fails whole, and every message in it, handled or
/// not, comes back and counts a receive towards its DLQ. Handing the rest back
/// untried keeps what was done.
fn out_of_time(slowest: std::time::Duration) -> Option<Untried> {
    let left = crate::runtime::time_left()?;
    (left < slowest.max(ANSWER_MARGIN)).then_some(Untried::OutOfTime { left, slowest })
}

/// Why the rest of a batch goes back to SQS untried.
#[derive(Debug, thiserror::Error)]
enum Untried {
    #[error("a dependency is stalled (a message failed after {0:?})")]
    Stalled(std::time::Duration),
    #[error(
        "the invocation is about to time out ({left:?} left; the slowest message took {slowest:?})"
    )]
    OutOfTime {
        left: std::time::Duration,
        slowest: std::time::Duration,
    },
}

/// Runs `handle` on every message's envelope; the failures go back to SQS.
pub async fn handle_batch<F, Fut, E>(consumer: &str, event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display + From<NotAnEnvelope>,
{
    handle_batch_crashing(consumer, event, handle, crash_hook()).await
}

async fn handle_batch_crashing<F, Fut, E>(
    consumer: &str,
    event: SqsEvent,
    handle: F,
    crash: &crate::faults::FaultHook,
) -> SqsBatchResponse
where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display + From<NotAnEnvelope>,
{
    let mut response = SqsBatchResponse::default();
    let mut stalled = None;
    let mut slowest = std::time::Duration::ZERO;
    for message in &event.records {
        // Once a dependency stalled, each message would wait as long again;
        // near the deadline, Lambda would time out with the whole batch.
        if let Some(reason) = stalled
            .map(Untried::Stalled)
            .or_else(|| out_of_time(slowest))
        {
            tracing::warn!(consumer, message_id = ?message.message_id, %reason, "message handed back untried; SQS will redeliver it");
            crate::metrics::increment(crate::metrics::Metric::ConsumerFailures);
            response.add_failure(message.message_id.clone().unwrap_or_default());
            continue;
        }
        let started = std::time::Instant::now();
        let mut crashed = false;
        let (span, result) = match envelope(message) {
            Ok(envelope) => {
                // First deliveries only: a redelivery can land in another
                // container, whose hook has not seen the event yet, and
                // crashing it there again would only push it to the DLQ.
                let first_delivery = message
                    .attributes
                    .get("ApproximateReceiveCount")
                    .is_none_or(|count| count == "1");
                crashed = first_delivery && crash.should_fail(&envelope.event_id);
                // Every log line of the handling carries the event's ids.
                let span = tracing::info_span!(
                    "event",
                    consumer,
                    eventId = %envelope.event_id,
                    eventType = ?envelope.event_type,
                    correlationId = %envelope.correlation_id,
                    traceId = envelope.trace_id.as_deref().unwrap_or_default(),
                );
                let result = handle(envelope).instrument(span.clone()).await;
                (span, result)
            }
            Err(e) => (tracing::Span::none(), Err(E::from(e))),
        };
        slowest = slowest.max(started.elapsed());
        let _entered = span.enter();
        match result {
            Ok(()) if crashed => {
                tracing::warn!(
                    consumer,
                    "injected crash after handling the event: SQS will redeliver it"
                );
                response.add_failure(message.message_id.clone().unwrap_or_default());
            }
            Ok(()) => tracing::info!("event handled"),
            Err(error) => {
                if started.elapsed() >= STALLED_AFTER {
                    stalled = Some(started.elapsed());
                }
                tracing::error!(consumer, message_id = ?message.message_id, %error, "event not processed; SQS will redeliver it");
                crate::metrics::increment(crate::metrics::Metric::ConsumerFailures);
                response.add_failure(message.message_id.clone().unwrap_or_default());
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultHook;
    use domain::events::{Envelope, EventType};

    fn batch(ids: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        for id in ids {
            let mut envelope =
                Envelope::new(EventType::OrderCreated, id, "2026-01-01T00:00:00Z", &id).unwrap();
            // Redeliveries carry the same event id.
            envelope.event_id = (*id).to_owned();
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m-{id}"));
            message.body = Some(serde_json::to_string(&envelope).unwrap());
            event.records.push(message);
        }
        event
    }

    fn failed(response: &SqsBatchResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    /// Issue 28.5: an event of an unknown version is not handled at all.
    #[tokio::test]
    async fn an_unknown_event_version_is_never_applied() {
        let handled = std::sync::Mutex::new(0);
        let handle = |_: Envelope| {
            *handled.lock().unwrap() += 1;
            async { Ok::<(), ConsumeError>(()) }
        };
        let mut event = batch(&["v1", "v99"]);
        let mut future: serde_json::Value =
            serde_json::from_str(event.records[1].body.as_deref().unwrap()).unwrap();
        future["version"] = 99.into();
        event.records[1].body = Some(future.to_string());
        let response = handle_batch_crashing("test", event, handle, &FaultHook::every(0)).await;
        assert_eq!(failed(&response), ["m-v99"]);
        assert_eq!(*handled.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_crash_after_handling_hands_the_event_back_once() {
        let handled = std::sync::Mutex::new(Vec::new());
        let handle = |e: Envelope| {
            handled.lock().unwrap().push(e.correlation_id.clone());
            async { Ok::<(), ConsumeError>(()) }
        };
        // Every event is chosen: each crashes after its first handling.
        let hook = FaultHook::every(1);
        let first = handle_batch_crashing("test", batch(&["a", "b"]), handle, &hook).await;
        assert_eq!(failed(&first), ["m-a", "m-b"]);
        let again = handle_batch_crashing("test", batch(&["a", "b", "c"]), handle, &hook).await;
        assert_eq!(
            failed(&again),
            ["m-c"],
            "a and b are acknowledged this time"
        );
        let last = handle_batch_crashing("test", batch(&["c"]), handle, &hook).await;
        assert!(failed(&last).is_empty());
        // A redelivery never crashes, whichever container it reaches.
        let mut redelivered = batch(&["e"]);
        redelivered.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
        let second = handle_batch_crashing("test", redelivered, handle, &hook).await;
        assert!(failed(&second).is_empty());
        assert_eq!(
            *handled.lock().unwrap(),
            ["a", "b", "a", "b", "c", "c", "e"],
            "every delivery was handled: the handlers must be idempotent"
        );
        // Off (0, as in production): nothing is ever handed back.
        let off = handle_batch_crashing("test", batch(&["d"]), handle, &FaultHook::every(0)).await;
        assert!(failed(&off).is_empty());
    }

    #[tokio::test]
    async fn near_its_deadline_a_batch_hands_the_rest_back_untried() {
        let handled = std::sync::Mutex::new(Vec::new());
        // Each message takes 200 ms; ten would need 2 s, the invocation has 1.
        let handle = |e: Envelope| {
            handled
                .lock()
                .unwrap()
                .push(format!("m-{}", e.correlation_id));
            async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Ok::<(), ConsumeError>(())
            }
        };
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let off = FaultHook::every(0);
        let response = crate::runtime::DEADLINE
            .scope(
                deadline,
                handle_batch_crashing("test", batch(&ids), handle, &off),
            )
            .await;
        let handled = handled.into_inner().unwrap();
        let handed_back = failed(&response);
        assert!(
            tokio::time::Instant::now() < deadline,
            "answered before the deadline"
        );
        assert!(!handled.is_empty(), "the first messages were handled");
        assert!(!handed_back.is_empty(), "not all ten fit");
        let mut every: Vec<String> = handled.iter().chain(&handed_back).cloned().collect();
        every.sort();
        let expected: Vec<String> = ids.iter().map(|id| format!("m-{id}")).collect();
        assert_eq!(
            every, expected,
            "each message was either handled and kept, or handed back untried"
        );
        // Without a deadline (tests, other callers) nothing is handed back.
        let quick = |_: Envelope| async { Ok::<(), ConsumeError>(()) };
        let unbounded = handle_batch_crashing("test", batch(&ids), quick, &off).await;
        assert!(failed(&unbounded).is_empty());
    }
}
