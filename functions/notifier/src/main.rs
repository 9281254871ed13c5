use adapters::faults::FaultHook;
use adapters::notifications::Inbox;
use adapters::notifications::sns::{Email, Sms};
use domain::notifications::verification::Contact;
use notifier::Notifier;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let sns = aws_sdk_sns::Client::new(&backend.sdk);
    let notifier = Notifier {
        store: backend.notifications(),
        inbox: Inbox {
            store: backend.notifications(),
        },
        sms: Sms {
            sns: sns.clone(),
            faults: FaultHook::from_env("NOTIFIER_FAULT_EVERY"),
            cap: backend.daily_cap(Contact::Sms)?,
        },
        email: Email {
            sns,
            topic_arn: adapters::config::required("EMAIL_TOPIC_ARN")?,
            cap: backend.daily_cap(Contact::Email)?,
        },
        markers_table: backend.tables.processed_events.clone(),
    };
    adapters::runtime::serve_queue(|batch| notifier.handle_batch(batch)).await
}
