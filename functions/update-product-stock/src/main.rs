// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let catalog = shared::backend::Backend::from_env().await?.catalog();
    shared::http::serve(|req| update_product_stock::handle(&catalog, req)).await
}
