use adapters::backend::Backend;
use adapters::payments::stripe::StripeProvider;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let stripe = StripeProvider::from_env(&backend.sdk)?;
    let payments = backend.payments();
    http_edge::http::serve(|req| stripe_notify::handle(&payments, &stripe, req)).await
}
