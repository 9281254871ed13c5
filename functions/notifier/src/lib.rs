//! Consumer of user-facing events: renders each into a message in the
//! user's language (zh-CN by default) and delivers it on every channel the
//! user chose: always the inbox, SMS and email when asked for.
//!
//! Each channel delivers each event once: the inbox by a conditional put
//! keyed by the event, SMS and email by a per-channel marker recorded after
//! a successful publish. A failing channel fails the message (SQS retries
//! it) without blocking or duplicating the others.

use adapters::consumer::{NotAnEnvelope, handle_batch};
use adapters::notifications::sns::{Email, Sms};
use adapters::notifications::{Inbox, Notifications};
use adapters::outbox::ProcessedMarker;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use domain::events::Envelope;
use domain::notifications::{Channel, ChannelError, Notification, Preferences, render, subject};

pub const CONSUMER: &str = "notifier";

/// Generic over the external channels so that tests can put a failing or
/// recording channel where SNS would be.
pub struct Notifier<S = Sms, E = Email> {
    pub store: Notifications,
    pub inbox: Inbox,
    pub sms: S,
    pub email: E,
    pub markers_table: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    NotAnEnvelope(#[from] NotAnEnvelope),
    #[error("event data names no userId")]
    NoUser,
    #[error(transparent)]
    Db(#[from] adapters::db::DbError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Channels(Vec<ChannelError>),
}

impl<S: Channel, E: Channel> Notifier<S, E> {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), NotifyError> {
        let subject = subject(envelope.event_type, &envelope.data);
        let user_id = subject["userId"]
            .as_str()
            .ok_or(NotifyError::NoUser)?
            .to_owned();
        let preferences = self.store.preferences(&user_id).await?;
        let Some((title, body)) = render(envelope.event_type, &envelope.data, preferences.locale)
        else {
            tracing::warn!("event type not for users (check the subscription's filter policy)");
            return Ok(());
        };
        let notification = Notification {
            // Sorts by time; the same event always gets the same id.
            notification_id: format!("{}#{}", envelope.occurred_at, envelope.event_id),
            user_id,
            event_id: envelope.event_id.clone(),
            event_type: envelope.event_type,
            order_id: subject["orderId"].as_str().map(str::to_owned),
            locale: preferences.locale,
            title,
            body,
            created_at: envelope.occurred_at.clone(),
        };
        let mut failures = Vec::new();
        // The inbox is idempotent by itself; the others need their marker.
        if let Err(e) = self.inbox.deliver(&notification, &preferences).await {
            failures.push(e);
        }
        for result in [
            self.external(&self.sms, &notification, &preferences).await,
            self.external(&self.email, &notification, &preferences)
                .await,
        ] {
            if let Err(e) = result {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotifyError::Channels(failures))
        }
    }

    async fn external(
        &self,
        channel: &impl Channel,
        notification: &Notification,
        preferences: &Preferences,
    ) -> Result<(), ChannelError> {
        if !channel.wanted(preferences) {
            return Ok(());
        }
        let failed = |e: adapters::db::DbError| ChannelError {
            channel: channel.name(),
            reason: e.to_string(),
        };
        let marker = ProcessedMarker::new(
            &self.markers_table,
            &format!("{CONSUMER}-{}", channel.name()),
            &notification.event_id,
        );
        if self.store.delivered(&marker).await.map_err(failed)? {
            return Ok(());
        }
        channel.deliver(notification, preferences).await?;
        self.store.record_delivery(&marker).await.map_err(failed)?;
        tracing::info!(channel = channel.name(), notification_id = %notification.notification_id, "delivered");
        Ok(())
    }
}
