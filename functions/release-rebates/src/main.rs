use lambda_runtime::LambdaEvent;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::runtime::init();
    let rebates = shared::backend::Backend::from_env().await?.rebates()?;
    // The scheduled event carries nothing we need: the clock decides.
    shared::runtime::serve_events(|_: LambdaEvent<serde_json::Value>| {
        let rebates = &rebates;
        async move { release_rebates::sweep(rebates).await }
    })
    .await
}
