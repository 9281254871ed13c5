use calculate_rebate::RebateConsumer;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let consumer = RebateConsumer {
        rebates: backend.rebates(),
        after_sales: adapters::config::after_sales()?,
        markers_table: backend.tables.processed_events.clone(),
    };
    adapters::runtime::serve_queue(|batch| consumer.handle_batch(batch)).await
}
