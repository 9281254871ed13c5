// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let rebates = adapters::backend::Backend::from_env().await?.rebates();
    http_edge::http::serve(|req| put_rebate_rules::handle(&rebates, req)).await
}
