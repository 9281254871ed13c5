// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let orders = adapters::backend::Backend::from_env().await?.orders()?;
    http_edge::http::serve(|req| find_orders_to_ship::handle(&orders, req)).await
}
