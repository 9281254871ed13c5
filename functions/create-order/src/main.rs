// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let orders = shared::backend::Backend::from_env().await?.orders();
    let payment_window = shared::config::payment_window()?;
    shared::http::serve(|req| create_order::handle(&orders, payment_window, req)).await
}
