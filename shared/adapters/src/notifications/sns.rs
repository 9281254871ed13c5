//! The channels that leave the system: SMS to a phone number, and e-mail
//! through an SNS topic the mail sender subscribes to.

use domain::notifications::{Channel, ChannelError, Notification, Preferences};

use crate::faults::FaultHook;

/// Text messages to the user's phone through SNS.
pub struct Sms {
    pub sns: aws_sdk_sns::Client,
    /// `NOTIFIER_FAULT_EVERY` (test stacks only).
    pub faults: FaultHook,
}

impl Channel for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn wanted(&self, preferences: &Preferences) -> bool {
        preferences.channels.sms && preferences.phone_number.is_some()
    }

    async fn deliver(
        &self,
        notification: &Notification,
        preferences: &Preferences,
    ) -> Result<(), ChannelError> {
        let failed = |reason: String| ChannelError {
            channel: "sms",
            reason,
        };
        if self.faults.should_fail(&notification.event_id) {
            return Err(failed("injected fault".into()));
        }
        self.sns
            .publish()
            .set_phone_number(preferences.phone_number.clone())
            .message(format!("{}: {}", notification.title, notification.body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))
    }
}

/// Emails through an SNS topic that the mail sender subscribes to; the
/// address travels as the `email` message attribute.
pub struct Email {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn wanted(&self, preferences: &Preferences) -> bool {
        preferences.channels.email && preferences.email.is_some()
    }

    async fn deliver(
        &self,
        notification: &Notification,
        preferences: &Preferences,
    ) -> Result<(), ChannelError> {
        let failed = |reason: String| ChannelError {
            channel: "email",
            reason,
        };
        let attribute = |value: &str| {
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| failed(e.to_string()))
        };
        let address = preferences.email.as_deref().unwrap_or("");
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.title)
            .message(&notification.body)
            .message_attributes("email", attribute(address)?)
            .message_attributes("notificationId", attribute(&notification.notification_id)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))
    }
}
