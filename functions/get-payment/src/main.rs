#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let payments = shared::backend::Backend::from_env().await?.payments();
    shared::http::serve(|req| get_payment::handle(&payments, req)).await
}
