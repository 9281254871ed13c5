#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let catalog = shared::backend::Backend::from_env().await?.catalog();
    shared::http::serve(|req| update_product_stock::handle(&catalog, req)).await
}
