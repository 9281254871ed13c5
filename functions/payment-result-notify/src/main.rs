use shared::backend::Backend;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = shared::secrets::sandbox_provider(&backend.sdk).await?;
    let payments = backend.payments();
    shared::http::serve(|req| payment_result_notify::handle(&payments, &provider, req)).await
}
