// The consumer future nests the ledger transactions deeply enough to pass
// rustc's default layout query depth (128).
#![recursion_limit = "256"]

use calculate_rebate::RebateConsumer;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::init_logging();
    let backend = shared::backend::Backend::from_env().await?;
    let consumer = RebateConsumer {
        rebates: backend.rebates()?,
        markers_table: backend.tables.processed_events.clone(),
    };
    let consumer = &consumer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(consumer.handle_batch(event.payload).await)
        },
    ))
    .await
}
