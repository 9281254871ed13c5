// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let orders = shared::backend::Backend::from_env().await?.orders();
    shared::http::serve(|req| list_orders::handle(&orders, req)).await
}
