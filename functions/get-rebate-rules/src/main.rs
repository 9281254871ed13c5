// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let rebates = shared::backend::Backend::from_env().await?.rebates()?;
    shared::http::serve(|req| get_rebate_rules::handle(&rebates, req)).await
}
