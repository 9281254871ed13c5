use adapters::backend::Backend;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = adapters::payments::sandbox::SandboxProvider::from_env(&backend.sdk);
    let payments = backend.payments();
    http_edge::http::serve(|req| payment_result_notify::handle(&payments, &provider, req)).await
}
