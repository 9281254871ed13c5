//! What every function does around its handler: structured logs, metrics,
//! and one flush of the invocation's metrics after it has answered.

use std::future::Future;

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics;

/// Structured logs for the Lambda runtime (honouring `AWS_LAMBDA_LOG_FORMAT`,
/// JSON in the template, and `AWS_LAMBDA_LOG_LEVEL`), and the EMF metrics
/// recorder. Call once, first thing in `main`.
pub fn init() {
    lambda_http::tracing::init_default_subscriber();
    metrics::init();
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
        // The invocation's deadline, for a queue consumer to stop in time.
        let time_left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + time_left;
        // Boxed: consumer futures nest deep enough to pass rustc's layout
        // depth limit once wrapped; one allocation per invocation is nothing.
        let answer = Box::pin(crate::consumer::DEADLINE.scope(deadline, handler(event)));
        async move {
            let result = answer.await;
            metrics::flush(&request_id);
            result
        }
    }))
    .await
}
