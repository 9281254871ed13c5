use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::init_logging();
    let rebates = shared::backend::Backend::from_env().await?.rebates()?;
    // The scheduled event carries nothing we need: the clock decides.
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let rebates = &rebates;
        async move { release_rebates::sweep(rebates).await }
    }))
    .await
}
