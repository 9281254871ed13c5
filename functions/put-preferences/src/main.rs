// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let notifications = adapters::backend::Backend::from_env()
        .await?
        .notifications();
    let countries = adapters::config::sms_countries()?;
    http_edge::http::serve(|req| put_preferences::handle(&notifications, &countries, req)).await
}
