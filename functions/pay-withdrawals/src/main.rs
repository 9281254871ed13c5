use pay_withdrawals::PayoutConsumer;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let consumer = PayoutConsumer {
        withdrawals: backend.withdrawals()?,
        provider: adapters::payments::providers::Providers::for_payouts(&backend.sdk)?,
    };
    adapters::runtime::serve_queue(|batch| consumer.handle_batch(batch)).await
}
