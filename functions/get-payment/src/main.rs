#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let payments = shared::backend::Backend::from_env().await?.payments();
    shared::http::serve(|req| get_payment::handle(&payments, req)).await
}
