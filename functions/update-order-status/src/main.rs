use adapters::backend::Backend;
use update_order_status::OrderStatusConsumer;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let consumer = OrderStatusConsumer {
        orders: backend.orders()?,
        payments: backend.payments(),
        provider: adapters::payments::providers::Providers::from_env(&backend.sdk)?,
        markers_table: backend.tables.processed_events.clone(),
    };
    adapters::runtime::serve_queue(|batch| consumer.handle_batch(batch)).await
}
