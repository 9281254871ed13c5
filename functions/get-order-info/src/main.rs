use shared::orders::Orders;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let orders = Orders::from_env().await?;
    shared::http::serve(|req| get_order_info::handle(&orders, req)).await
}
