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

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::notifications::verification::{Contact, PendingCode, RESEND_AFTER_SECONDS, Verified};
use domain::notifications::{Channel, ChannelError, Notification, Preferences};

use crate::config::Tables;
use crate::db::{DbError, Item, build_err, n, s};
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
/// The preferences and the codes sent and not yet confirmed.
#[derive(Debug, Clone)]
pub struct ContactState {
    pub preferences: Preferences,
    pub pending: HashMap<Contact, PendingCode>,
}

fn pending_attribute(contact: Contact) -> &'static str {
    match contact {
        Contact::Sms => "pendingSms",
        Contact::Email => "pendingEmail",
    }
}

fn verified_attribute(contact: Contact) -> &'static str {
    match contact {
        Contact::Sms => "verifiedSms",
        Contact::Email => "verifiedEmail",
    }
}

/// A code's hash as stored: bound to the user and the destination, so a
/// code is good for nothing else, and never kept in clear.
pub fn code_hash(user_id: &str, destination: &str, code: &str) -> String {
    crate::idempotency::fingerprint(&(user_id, destination, code))
}

/// The contact state an item of the preferences table holds.
fn state_of(user_id: &str, item: &Item) -> Result<ContactState, DbError> {
    let mut preferences: Preferences = match item.get("preferences") {
        Some(AttributeValue::S(json)) => serde_json::from_str(json)
            .map_err(|e| DbError::Corrupt(format!("preferences of {user_id}: {e}")))?,
        _ => Preferences::default(),
    };
    let proven = |contact: Contact| {
        let verified = item
            .get(verified_attribute(contact))
            .and_then(|v| v.as_s().ok());
        verified.is_some() && verified.map(String::as_str) == preferences.destination(contact)
    };
    preferences.verified = Verified {
        sms: proven(Contact::Sms),
        email: proven(Contact::Email),
    };
    let mut pending = HashMap::new();
    for contact in [Contact::Sms, Contact::Email] {
        if let Some(value) = item.get(pending_attribute(contact)) {
            let code: PendingCode = serde_dynamo::from_attribute_value(value.clone())?;
            pending.insert(contact, code);
        }
    }
    Ok(ContactState {
        preferences,
        pending,
    })
}

/// `Ok(false)` for a condition that did not hold.
fn conditional<T, E: Into<DbError>>(result: Result<T, E>) -> Result<bool, DbError> {
    match result.map_err(Into::into) {
        Ok(_) => Ok(true),
        Err(DbError::ConditionFailed) => Ok(false),
        Err(other) => Err(other),
    }
}

/// A per-user daily cap on one channel's messages (`SMS_DAILY_CAP`,
/// `EMAIL_DAILY_CAP`), codes included: one counter item per user, channel
/// and UTC day in the rate-limits table, taken by a conditional increment.
#[derive(Clone, Debug)]
pub struct DailyCap {
    pub client: Client,
    pub table: String,
    pub contact: Contact,
    pub per_day: u32,
}

impl DailyCap {
    /// Takes one of today's messages; `false` when they are used up.
    pub async fn take(&self, user_id: &str, now: time::OffsetDateTime) -> Result<bool, DbError> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day = domain::sales::date_text(now.date());
        // Kept a day past its own, then TTL deletes it.
        let expires = now.unix_timestamp() + 2 * 24 * 3600;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "bucketId",
                s(&format!("daily#{}#{user_id}#{day}", self.contact.as_str())),
            )
            .update_expression("ADD #count :one SET expiresAtEpoch = :expires")
            .condition_expression("attribute_not_exists(#count) OR #count < :cap")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(i64::from(self.per_day)))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await;
        let taken = conditional(result)?;
        if !taken {
            crate::metrics::increment(crate::metrics::Metric::MessagesCapped);
        }
        Ok(taken)
    }

    /// Seconds until the next UTC day, when the cap is whole again.
    pub fn seconds_to_reset(now: time::OffsetDateTime) -> i64 {
        let now = now.to_offset(time::UtcOffset::UTC);
        let midnight = now.date().next_day().map(|d| d.midnight().assume_utc());
        midnight.map_or(86_400, |m| (m - now).whole_seconds().max(1))
    }
}

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
    /// The user's preferences, with which destinations are proven.
    pub async fn preferences(&self, user_id: &str) -> Result<Preferences, DbError> {
        Ok(self.contact_state(user_id).await?.preferences)
    }

    /// The preferences and the codes sent and not yet confirmed.
    pub async fn contact_state(&self, user_id: &str) -> Result<ContactState, DbError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .consistent_read(true)
            .send()
            .await?;
        state_of(user_id, &out.item.unwrap_or_default())
    }

    /// Replaces the preferences, and answers them as now in force; what was
    /// verified stays recorded (it counts only while the destination is the
    /// same).
    pub async fn set_preferences(
        &self,
        user_id: &str,
        preferences: &Preferences,
    ) -> Result<Preferences, DbError> {
        let json = serde_json::to_string(preferences)?;
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .update_expression("SET preferences = :p, updatedAt = :now")
            .expression_attribute_values(":p", s(&json))
            .expression_attribute_values(":now", s(&domain::clock::now_rfc3339()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await?;
        Ok(state_of(user_id, &out.attributes.unwrap_or_default())?.preferences)
    }

    /// Records a new code for `contact`, replacing an older one, unless a
    /// code went out less than [`RESEND_AFTER_SECONDS`] ago (`false`): the
    /// condition makes racing requests send one code.
    pub async fn put_code(
        &self,
        user_id: &str,
        contact: Contact,
        code: &PendingCode,
    ) -> Result<bool, DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .update_expression("SET #pending = :code")
            .condition_expression("attribute_not_exists(#pending) OR #pending.sentAt <= :before")
            .expression_attribute_names("#pending", pending_attribute(contact))
            .expression_attribute_values(":code", serde_dynamo::to_attribute_value(code)?)
            .expression_attribute_values(":before", n(code.sent_at - RESEND_AFTER_SECONDS))
            .send()
            .await;
        conditional(result)
    }

    /// Counts a wrong guess at `code` (once per guess: conditional on the
    /// count read).
    pub async fn count_wrong_guess(
        &self,
        user_id: &str,
        contact: Contact,
        code: &PendingCode,
    ) -> Result<(), DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .update_expression("SET #pending.attempts = :next")
            .condition_expression("#pending.codeHash = :hash AND #pending.attempts = :seen")
            .expression_attribute_names("#pending", pending_attribute(contact))
            .expression_attribute_values(":hash", s(&code.code_hash))
            .expression_attribute_values(":seen", n(i64::from(code.attempts)))
            .expression_attribute_values(":next", n(i64::from(code.attempts) + 1))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Makes `code`'s destination the verified one and uses the code up;
    /// `false` if the code changed or took a guess meanwhile.
    pub async fn confirm(
        &self,
        user_id: &str,
        contact: Contact,
        code: &PendingCode,
    ) -> Result<bool, DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.preferences)
            .key("userId", s(user_id))
            .update_expression("SET #verified = :destination REMOVE #pending")
            .condition_expression("#pending.codeHash = :hash AND #pending.attempts = :seen")
            .expression_attribute_names("#pending", pending_attribute(contact))
            .expression_attribute_names("#verified", verified_attribute(contact))
            .expression_attribute_values(":destination", s(&code.destination))
            .expression_attribute_values(":hash", s(&code.code_hash))
            .expression_attribute_values(":seen", n(i64::from(code.attempts)))
            .send()
            .await;
        conditional(result)
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
