use lambda_runtime::{LambdaEvent, service_fn};
use roll_up_sales::RollupRequest;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::init_logging();
    let sales = shared::backend::Backend::from_env().await?.sales();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let sales = &sales;
        async move {
            // A scheduled event has no `date`; anything else unknown is ignored.
            let request: RollupRequest = serde_json::from_value(event.payload).unwrap_or_default();
            roll_up_sales::roll_up(sales, request).await
        }
    }))
    .await
}
