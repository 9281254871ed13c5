// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let store = adapters::backend::Backend::from_env()
        .await?
        .notifications();
    http_edge::http::serve(|req| confirm_contact_verification::handle(&store, req)).await
}
