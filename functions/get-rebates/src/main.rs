#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::init();
    let rebates = shared::backend::Backend::from_env().await?.rebates()?;
    shared::http::serve(|req| get_rebates::handle(&rebates, req)).await
}
