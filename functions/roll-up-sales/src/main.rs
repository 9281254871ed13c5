use lambda_runtime::LambdaEvent;
use roll_up_sales::RollupRequest;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let sales = adapters::backend::Backend::from_env().await?.sales();
    adapters::runtime::serve_events(|event: LambdaEvent<serde_json::Value>| {
        let sales = &sales;
        async move {
            let request = RollupRequest::from_payload(&event.payload)?;
            roll_up_sales::roll_up(sales, request).await
        }
    })
    .await
}
