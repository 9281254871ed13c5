use adapters::faults::FaultHook;
use adapters::notifications::sns::{Email, Sms};
use domain::notifications::verification::Contact;
use start_contact_verification::CodeSender;

// One invocation at a time: a single-threaded runtime starts faster and uses less memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    adapters::runtime::init();
    let backend = adapters::backend::Backend::from_env().await?;
    let sns = aws_sdk_sns::Client::new(&backend.sdk);
    let sender = CodeSender {
        store: backend.notifications(),
        sms: Sms {
            sns: sns.clone(),
            // Codes go out by `send`, which injects no faults.
            faults: FaultHook::default(),
            cap: backend.daily_cap(Contact::Sms)?,
        },
        email: Email {
            sns,
            topic_arn: adapters::config::required("EMAIL_TOPIC_ARN")?,
            cap: backend.daily_cap(Contact::Email)?,
        },
        countries: adapters::config::sms_countries()?,
    };
    http_edge::http::serve(|req| start_contact_verification::handle(&sender, req)).await
}
