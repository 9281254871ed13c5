use lambda_runtime::LambdaEvent;
use publish_events::{FaultHook, Publisher};

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let publisher = Publisher {
        sns: aws_sdk_sns::Client::new(&adapters::db::sdk_config().await),
        topic_arn: adapters::config::required("EVENTS_TOPIC_ARN")?,
        faults: FaultHook::from_env("FAULT_PUBLISH_EVERY"),
    };
    let publisher = &publisher;
    let report = publish_events::FailureReport::from_env();
    // An error fails the invocation, so Lambda retries the batch.
    adapters::runtime::serve_events(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
            publish_events::publish_stream_batch(publisher, event.payload, report)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    )
    .await
}
