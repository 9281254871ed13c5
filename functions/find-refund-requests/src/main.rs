// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let requests = adapters::backend::Backend::from_env()
        .await?
        .refund_requests()?;
    http_edge::http::serve(|req| find_refund_requests::handle(&requests, req)).await
}
