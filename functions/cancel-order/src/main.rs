use shared::backend::Backend;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let backend = Backend::from_env().await?;
    let provider = shared::secrets::sandbox_provider(&backend.sdk).await?;
    let (orders, payments) = (backend.orders(), backend.payments());
    shared::http::serve(|req| cancel_order::handle(&orders, &payments, &provider, req)).await
}
