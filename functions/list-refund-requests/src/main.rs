// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let (orders, requests) = (backend.orders()?, backend.refund_requests()?);
    http_edge::http::serve(|req| list_refund_requests::handle(&orders, &requests, req)).await
}
