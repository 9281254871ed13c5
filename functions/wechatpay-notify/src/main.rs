use adapters::backend::Backend;
use adapters::payments::wechatpay::WechatPayProvider;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = Backend::from_env().await?;
    let wechatpay = WechatPayProvider::from_env(&backend.sdk)?;
    let payments = backend.payments();
    http_edge::http::serve(|req| wechatpay_notify::handle(&payments, &wechatpay, req)).await
}
