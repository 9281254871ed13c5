use adapters::backend::Backend;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = adapters::payments::providers::Providers::from_env(&backend.sdk)?;
    let (requests, payments) = (backend.refund_requests()?, backend.payments());
    http_edge::http::serve(|req| {
        decide_refund_request::handle(&requests, &payments, &provider, req)
    })
    .await
}
