use shared::orders::Orders;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let orders = Orders::from_env().await?;
    let payment_window = shared::config::payment_window()?;
    shared::http::serve(|req| create_order::handle(&orders, payment_window, req)).await
}
