use shared::backend::Backend;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = shared::secrets::sandbox_provider(&backend.sdk)?;
    let (orders, payments) = (backend.orders(), backend.payments());
    shared::http::serve(|req| initiate_payment::handle(&orders, &payments, &provider, req)).await
}
