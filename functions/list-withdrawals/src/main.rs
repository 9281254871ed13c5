// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let withdrawals = adapters::backend::Backend::from_env()
        .await?
        .withdrawals()?;
    http_edge::http::serve(|req| list_withdrawals::handle(&withdrawals, req)).await
}
