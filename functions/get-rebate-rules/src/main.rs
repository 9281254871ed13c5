#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::init_logging();
    let rebates = shared::backend::Backend::from_env().await?.rebates()?;
    shared::http::serve(|req| get_rebate_rules::handle(&rebates, req)).await
}
