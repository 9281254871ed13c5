#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let orders = shared::backend::Backend::from_env().await?.orders();
    shared::http::serve(|req| cancel_order::handle(&orders, req)).await
}
