use shared::catalog::Catalog;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let catalog = Catalog::from_env().await?;
    shared::http::serve(|req| list_products::handle(&catalog, req)).await
}
