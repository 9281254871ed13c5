//! What every function does around its handler: structured logs, metrics,
//! and one flush of the invocation's metrics after it has answered.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics;

tokio::task_local! {
    /// When Lambda will stop the current invocation (set by [`serve_events`]).
    pub static DEADLINE: tokio::time::Instant;
}

/// How long the current invocation has before Lambda stops it; `None`
/// outside one (a test, a local run), where nothing should stop early.
/// Batch work checks it between items: an invocation that runs into its
/// timeout is killed mid-item and fails whole, so stopping cleanly and
/// leaving the rest for a retry or the next run keeps what was done.
pub fn time_left() -> Option<std::time::Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(tokio::time::Instant::now()))
        .ok()
}

/// Structured logs for the Lambda runtime (honouring `AWS_LAMBDA_LOG_FORMAT`,
/// JSON in the template, and `AWS_LAMBDA_LOG_LEVEL`), and the EMF metrics
/// recorder. Call once, first thing in `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
    metrics::init();
}

/// A scheduled sweep stops once less than this is left: room for one more
/// item's read and write, each bounded by the SDK's operation timeout.
pub const SWEEP_MARGIN: std::time::Duration =
    std::time::Duration::from_secs(2 * crate::db::OPERATION_TIMEOUT.as_secs());

/// A scheduled sweep whose run left some due items undone (logged one by
/// one): the invocation fails so that its alarm counts it, and the next
/// run retries them.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {due} due items could not be handled; the next run retries them")]
pub struct SweepIncomplete {
    pub failed: usize,
    pub due: usize,
}

/// Whether a sweep must stop and leave the rest to the next run (every minute).
pub fn sweep_out_of_time() -> bool {
    time_left().is_some_and(|left| left < SWEEP_MARGIN)
}

/// Runs a non-HTTP handler (queue consumer, stream, schedule) on the Lambda
/// runtime, flushing its metrics after every invocation.
pub async fn serve_events<E, R, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    E: DeserializeOwned + Send,
    R: Serialize,
    F: Fn(LambdaEvent<E>) -> Fut,
    Fut: Future<Output = Result<R, lambda_runtime::Error>>,
{
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        let request_id = event.context.request_id.clone();
        // The invocation's deadline, for batch work to stop in time.
        let time_left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + time_left;
        // Boxed: consumer futures nest deep enough to pass rustc's layout
        // depth limit once wrapped; one allocation per invocation is nothing.
        let answer = Box::pin(DEADLINE.scope(deadline, handler(event)));
        async move {
            let result = answer.await;
            metrics::flush(&request_id);
            result
        }
    }))
    .await
}

/// Runs a queue consumer: each SQS batch goes to `handle_batch`, whose
/// answer names the failed messages (`ReportBatchItemFailures`).
pub async fn serve_queue<F, Fut>(handle_batch: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    serve_events(move |event: LambdaEvent<SqsEvent>| {
        let batch = handle_batch(event.payload);
        async move { Ok::<_, lambda_runtime::Error>(batch.await) }
    })
    .await
}
