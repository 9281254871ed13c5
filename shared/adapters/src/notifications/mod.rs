//! Notifications: users' preferences, message templates, the in-app inbox,
//! and the channels that deliver a notification (inbox, SMS, email).
//!
//! A notification's id is derived from its event (`<occurredAt>#<eventId>`),
//! so the inbox holds it at most once (a conditional put) and sorts newest
//! first. External channels (SMS, email through SNS) record a per-channel
//! marker after a successful publish and skip when it is there: a
//! redelivered event re-sends nothing that went out, and a failed channel is
//! retried through SQS without touching the others. (A crash between a
//! publish and its marker can send one duplicate SMS or email; SNS offers
//! no idempotent publish to phones or standard topics.)

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::notifications::{Channel, ChannelError, Notification, Preferences};

use crate::config::Tables;
use crate::db::{DbError, Item, build_err, s};
use crate::outbox::ProcessedMarker;

/// The SMS and e-mail channels, through SNS (only the notifier compiles them).
#[cfg(feature = "sns")]
pub mod sns;

/// The in-app inbox (the notifications table).
pub struct Inbox {
    pub store: Notifications,
}

impl Channel for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn wanted(&self, _: &Preferences) -> bool {
        true
    }

    async fn deliver(
        &self,
        notification: &Notification,
        _: &Preferences,
    ) -> Result<(), ChannelError> {
        self.store
            .put_in_inbox(notification)
            .await
            .map(|_| ())
            .map_err(|e| ChannelError {
                channel: "inbox",
                reason: e.to_string(),
            })
    }
}

/// The notifications and preferences tables.
#[derive(Clone, Debug)]
pub struct Notifications {
    client: Client,
    tables: Tables,
}

/// The key attributes of an inbox page token.
pub const INBOX_KEY: &[&str] = &["userId", "notificationId"];

impl Notifications {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    /// The user's preferences, or the defaults (zh-CN, inbox only).
    pub async fn preferences(&self, user_id: &str) -> Result<Preferences, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .consistent_read(true)
            .send()
            .await?;
        match out.item.as_ref().and_then(|i| i.get("preferences")) {
            Some(AttributeValue::S(json)) => serde_json::from_str(json)
                .map_err(|e| DbError::Corrupt(format!("preferences of {user_id}: {e}"))),
            _ => Ok(Preferences::default()),
        }
    }

    pub async fn set_preferences(
        &self,
        user_id: &str,
        preferences: &Preferences,
    ) -> Result<(), DbError> {
        let json =
            serde_json::to_string(preferences).map_err(|e| DbError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.tables.preferences)
            .item("userId", s(user_id))
            .item("preferences", s(&json))
            .item("updatedAt", s(&domain::clock::now_rfc3339()))
            .send()
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    /// Stores a notification once; `false` when it was already there.
    pub async fn put_in_inbox(&self, notification: &Notification) -> Result<bool, DbError> {
        let item: Item = serde_dynamo::to_item(notification)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.notifications)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(notificationId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// A user's inbox, newest first.
    pub async fn inbox(
        &self,
        user_id: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Notification>, Option<Item>), DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.notifications)
            .key_condition_expression("userId = :u")
            .expression_attribute_values(":u", s(user_id))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<Notification>, _>>()?;
        Ok((items, out.last_evaluated_key))
    }

    /// Whether `marker` (a channel's delivery of one event) is recorded.
    pub async fn delivered(&self, marker: &ProcessedMarker) -> Result<bool, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&marker.table)
            .key("markerId", s(&marker.key))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item.is_some())
    }

    pub async fn record_delivery(&self, marker: &ProcessedMarker) -> Result<(), DbError> {
        let put = marker.put(&domain::clock::now_rfc3339())?;
        self.client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .send()
            .await
            .map_err(|e| build_err(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}
