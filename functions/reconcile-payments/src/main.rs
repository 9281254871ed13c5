use adapters::payments::providers::Providers;
use lambda_runtime::LambdaEvent;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let payments = backend.payments();
    let providers = Providers::from_env(&backend.sdk)?;
    // The scheduled event carries nothing we need: the clock decides.
    adapters::runtime::serve_events(|event: LambdaEvent<serde_json::Value>| {
        let (payments, providers) = (&payments, &providers);
        async move { reconcile_payments::sweep(payments, providers, &event.context.request_id).await }
    })
    .await
}
