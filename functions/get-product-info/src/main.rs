// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let catalog = shared::backend::Backend::from_env().await?.catalog();
    shared::http::serve(|req| get_product_info::handle(&catalog, req)).await
}
