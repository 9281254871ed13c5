#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let notifications = shared::backend::Backend::from_env().await?.notifications();
    shared::http::serve(|req| put_preferences::handle(&notifications, req)).await
}
