use adapters::backend::Backend;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = adapters::payments::providers::Providers::from_env(&backend.sdk)?;
    let (orders, payments) = (backend.orders()?, backend.payments());
    http_edge::http::serve(|req| cancel_order::handle(&orders, &payments, &provider, req)).await
}
