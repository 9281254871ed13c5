// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let notifications = shared::backend::Backend::from_env().await?.notifications();
    shared::http::serve(|req| list_notifications::handle(&notifications, req)).await
}
