use shared::orders::Orders;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let orders = Orders::from_env().await?;
    shared::http::serve(|req| cancel_order::handle(&orders, req)).await
}
