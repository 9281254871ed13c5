#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let sales = shared::backend::Backend::from_env().await?.sales();
    shared::http::serve(|req| get_sales_stats::handle(&sales, req)).await
}
