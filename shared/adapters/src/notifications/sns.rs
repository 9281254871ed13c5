//! The channels that leave the system: SMS to a phone number, and e-mail
//! through an SNS topic the mail sender subscribes to.

use domain::notifications::verification::Contact;
use domain::notifications::{Channel, ChannelError, Notification, Preferences};

use crate::faults::FaultHook;
use crate::notifications::DailyCap;

/// Text messages to the user's phone through SNS.
pub struct Sms {
    pub sns: aws_sdk_sns::Client,
    /// `NOTIFIER_FAULT_EVERY` (test stacks only).
    pub faults: FaultHook,
    pub cap: DailyCap,
}

impl Sms {
    /// Sends `text` to `phone` (a notification or a verification code).
    pub async fn send(&self, phone: &str, text: &str) -> Result<(), ChannelError> {
        self.sns
            .publish()
            .phone_number(phone)
            .message(text)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ChannelError {
                channel: "sms",
                reason: aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
            })
    }
}

/// Takes one of the user's messages of the day; a capped message is not
/// sent (and not retried: the cap is the point), only counted and logged.
async fn within_cap(
    cap: &DailyCap,
    user_id: &str,
    channel: &'static str,
) -> Result<bool, ChannelError> {
    let taken = cap
        .take(user_id, domain::clock::now())
        .await
        .map_err(|e| ChannelError {
            channel,
            reason: e.to_string(),
        })?;
    if !taken {
        tracing::warn!(%user_id, channel, per_day = cap.per_day, "daily cap reached: message not sent");
    }
    Ok(taken)
}

impl Channel for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }

    /// Only to a proven number (issue 29.3).
    fn wanted(&self, preferences: &Preferences) -> bool {
        preferences.may_use(Contact::Sms)
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
        if !within_cap(&self.cap, &notification.user_id, "sms").await? {
            return Ok(());
        }
        let phone = preferences.phone_number.as_deref().unwrap_or_default();
        self.send(
            phone,
            &format!("{}: {}", notification.title, notification.body),
        )
        .await
    }
}

/// Emails through an SNS topic that the mail sender subscribes to; the
/// address travels as the `email` message attribute.
pub struct Email {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
    pub cap: DailyCap,
}

impl Email {
    /// Sends a message to `address`; `id` names it for the mail sender
    /// (the notification's id, or the code's).
    pub async fn send(
        &self,
        address: &str,
        subject: &str,
        body: &str,
        id: &str,
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
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .message_attributes("email", attribute(address)?)
            .message_attributes("notificationId", attribute(id)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))
    }
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    /// Only to a proven address (issue 29.3).
    fn wanted(&self, preferences: &Preferences) -> bool {
        preferences.may_use(Contact::Email)
    }

    async fn deliver(
        &self,
        notification: &Notification,
        preferences: &Preferences,
    ) -> Result<(), ChannelError> {
        if !within_cap(&self.cap, &notification.user_id, "email").await? {
            return Ok(());
        }
        let address = preferences.email.as_deref().unwrap_or_default();
        self.send(
            address,
            &notification.title,
            &notification.body,
            &notification.notification_id,
        )
        .await
    }
}
