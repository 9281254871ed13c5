use lambda_runtime::LambdaEvent;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let rebates = adapters::backend::Backend::from_env().await?.rebates();
    // The scheduled event carries nothing we need: the clock decides.
    adapters::runtime::serve_events(|_: LambdaEvent<serde_json::Value>| {
        let rebates = &rebates;
        async move { release_rebates::sweep(rebates).await }
    })
    .await
}
