#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let sales = shared::backend::Backend::from_env().await?.sales();
    shared::http::serve(|req| get_sales_stats::handle(&sales, req)).await
}
