use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::init_logging();
    let orders = shared::backend::Backend::from_env().await?.orders();
    // The scheduled event carries nothing we need: the clock decides.
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let orders = &orders;
        async move { expire_orders::sweep(orders, &event.context.request_id).await }
    }))
    .await
}
