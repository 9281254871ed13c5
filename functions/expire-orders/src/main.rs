use lambda_runtime::LambdaEvent;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let (orders, payments) = (backend.orders()?, backend.payments());
    // The scheduled event carries nothing we need: the clock decides.
    adapters::runtime::serve_events(|event: LambdaEvent<serde_json::Value>| {
        let (orders, payments) = (&orders, &payments);
        async move { expire_orders::sweep(orders, payments, &event.context.request_id).await }
    })
    .await
}
