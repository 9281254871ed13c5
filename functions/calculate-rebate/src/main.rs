use calculate_rebate::RebateConsumer;
use lambda_runtime::LambdaEvent;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let consumer = RebateConsumer {
        rebates: backend.rebates()?,
        markers_table: backend.tables.processed_events.clone(),
    };
    let consumer = &consumer;
    adapters::runtime::serve_events(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(consumer.handle_batch(event.payload).await)
        },
    )
    .await
}
