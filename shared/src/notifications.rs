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

use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Tables;
use crate::db::{DbError, Item, build_err, s};
use crate::error::ApiError;
use crate::events::{EventType, ProcessedMarker};
use crate::faults::FaultHook;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Channels {
    /// Always on: the inbox is the record of what was sent.
    #[serde(default = "yes")]
    pub inbox: bool,
    #[serde(default)]
    pub sms: bool,
    #[serde(default)]
    pub email: bool,
}

fn yes() -> bool {
    true
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            inbox: true,
            sms: false,
            email: false,
        }
    }
}

/// `GET/PUT /me/preferences`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Preferences {
    #[serde(default)]
    pub locale: Locale,
    #[serde(default)]
    pub channels: Channels,
    /// E.164, e.g. `+8613800138000`; required for SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Required for email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Preferences {
    pub fn validate(&self) -> Result<(), ApiError> {
        if !self.channels.inbox {
            return Err(ApiError::invalid_field(
                "channels.inbox",
                "cannot be turned off: the inbox keeps every notification",
            ));
        }
        if let Some(phone) = &self.phone_number {
            let digits = phone.strip_prefix('+').unwrap_or("");
            if !(8..=15).contains(&digits.len())
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.starts_with('0')
            {
                return Err(ApiError::invalid_field(
                    "phoneNumber",
                    "must be an E.164 number such as +8613800138000",
                ));
            }
        }
        if let Some(email) = &self.email
            && !is_deliverable_email(email)
        {
            return Err(ApiError::invalid_field(
                "email",
                "must be an email address such as name@example.com (ASCII letters, digits and \
                 .!#$%&'*+/=?^_`{|}~- before the @, a domain name of dot-separated labels after it)",
            ));
        }
        if self.channels.sms && self.phone_number.is_none() {
            return Err(ApiError::invalid_field(
                "channels.sms",
                "needs a phoneNumber to send to",
            ));
        }
        if self.channels.email && self.email.is_none() {
            return Err(ApiError::invalid_field(
                "channels.email",
                "needs an email address to send to",
            ));
        }
        Ok(())
    }
}

/// The addresses we send to: a documented subset of RFC 5321/5322 that every
/// mail system delivers. The local part is 1–64 of the "atext" characters
/// and dots (no dot first, last or twice); the domain is at most 253
/// characters of dot-separated labels of letters, digits and inner hyphens
/// (1–63 each, internationalised domains in their `xn--` form), with an
/// alphabetic top level of 2 or more letters. ASCII only: no quoted local
/// parts, IP literals, comments, display names (`<a@b.c>`), spaces, control,
/// zero-width or bidi characters.
pub fn is_deliverable_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = (1..=64).contains(&local.len())
        && local
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let top_ok = labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) && top_ok
}

/// One inbox message, as stored and as `GET /me/notifications` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub notification_id: String,
    pub user_id: String,
    pub event_id: String,
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub locale: Locale,
    pub title: String,
    pub body: String,
    pub created_at: String,
}

/// Minor units as a human amount: 35590 CNY → "¥355.90", USD → "US$…".
pub fn format_amount(amount: i64, currency: &str) -> String {
    let decimals = match currency {
        "JPY" | "KRW" | "VND" => 0,
        _ => 2,
    };
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let symbol = match currency {
        "CNY" => "¥".to_owned(),
        "USD" => "US$".to_owned(),
        "EUR" => "€".to_owned(),
        other => format!("{other} "),
    };
    if decimals == 0 {
        format!("{sign}{symbol}{abs}")
    } else {
        format!("{sign}{symbol}{}.{:02}", abs / 100, abs % 100)
    }
}

/// The part of an event's data that names the user and the order: the
/// data itself, or for `PaymentRefunded` (`{payment, providerRefundId,
/// reason}`) its payment.
pub fn subject(event_type: EventType, data: &Value) -> &Value {
    match (event_type, data.get("payment")) {
        (EventType::PaymentRefunded, Some(payment)) => payment,
        _ => data,
    }
}

/// The title and body for a user-facing event, or None for events users
/// are not told about.
///
/// Refunds are told from `PaymentRefunded`, not `OrderRefunded`: every
/// refund has the first (including a success refunded because its order
/// was cancelled or expired meanwhile, which has no `OrderRefunded`), and
/// telling both would say one refund twice.
pub fn render(event_type: EventType, data: &Value, locale: Locale) -> Option<(String, String)> {
    let data = subject(event_type, data);
    let text = |name: &str| data[name].as_str().unwrap_or("").to_owned();
    let order = text("orderId");
    let currency = data["currency"].as_str().unwrap_or("CNY");
    let order_amount = format_amount(data["orderAmount"].as_i64().unwrap_or(0), currency);
    let amount = format_amount(data["amount"].as_i64().unwrap_or(0).abs(), currency);
    let expires = text("expiresAt");
    let available = text("availableAt");
    let zh = locale == Locale::ZhCn;
    let (title, body) = match event_type {
        EventType::OrderCreated if zh => (
            "订单已创建",
            format!("您的订单 {order} 已创建，金额 {order_amount}，请在 {expires} 前完成支付。"),
        ),
        EventType::OrderCreated => (
            "Order placed",
            format!("Your order {order} for {order_amount} is placed. Please pay by {expires}."),
        ),
        EventType::OrderPaid if zh => (
            "支付成功",
            format!("订单 {order} 已支付 {order_amount}，我们将尽快为您发货。"),
        ),
        EventType::OrderPaid => (
            "Payment received",
            format!("We received {order_amount} for order {order}. It will ship soon."),
        ),
        EventType::OrderPaymentFailed if zh => (
            "支付失败",
            format!("订单 {order} 支付未成功，您可以在 {expires} 前重新支付。"),
        ),
        EventType::OrderPaymentFailed => (
            "Payment failed",
            format!(
                "The payment for order {order} did not go through. You can try again until {expires}."
            ),
        ),
        EventType::OrderExpired if zh => (
            "订单已过期",
            format!("订单 {order} 未在支付期限内完成支付，已自动关闭。"),
        ),
        EventType::OrderExpired => (
            "Order expired",
            format!("Order {order} was not paid in time and has been closed."),
        ),
        EventType::OrderCancelled if zh => ("订单已取消", format!("订单 {order} 已取消。")),
        EventType::OrderCancelled => ("Order cancelled", format!("Order {order} is cancelled.")),
        EventType::PaymentRefunded if zh => {
            ("退款成功", format!("订单 {order} 的 {amount} 已原路退回。"))
        }
        EventType::PaymentRefunded => (
            "Refund issued",
            format!("{amount} for order {order} is on its way back to you."),
        ),
        EventType::RebateCredited if zh => (
            "返利已入账",
            format!("订单 {order} 为您赚取返利 {amount}，将于 {available} 后可用。"),
        ),
        EventType::RebateCredited => (
            "Rebate credited",
            format!("Order {order} earned you a {amount} rebate, available from {available}."),
        ),
        EventType::RebateReversed if zh => (
            "返利已撤销",
            format!("订单 {order} 已退款，相应返利 {amount} 已撤销。"),
        ),
        EventType::RebateReversed => (
            "Rebate reversed",
            format!("Order {order} was refunded, so its {amount} rebate is reversed."),
        ),
        EventType::PaymentSucceeded | EventType::PaymentFailed | EventType::OrderRefunded => {
            return None;
        }
    };
    Some((title.to_owned(), body))
}

#[derive(Debug, thiserror::Error)]
#[error("{channel} channel failed: {reason}")]
pub struct ChannelError {
    pub channel: &'static str,
    pub reason: String,
}

/// A way of reaching a user. `deliver` must be safe to call again for the
/// same notification (the caller skips channels that already delivered).
pub trait Channel {
    fn name(&self) -> &'static str;
    /// Whether this user gets notifications this way.
    fn wanted(&self, preferences: &Preferences) -> bool;
    fn deliver(
        &self,
        notification: &Notification,
        preferences: &Preferences,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send;
}

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
    ) -> Result<(), ApiError> {
        preferences.validate()?;
        let json =
            serde_json::to_string(preferences).map_err(|e| DbError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.tables.preferences)
            .item("userId", s(user_id))
            .item("preferences", s(&json))
            .item("updatedAt", s(&crate::clock::now_rfc3339()))
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
        let put = marker.put(&crate::clock::now_rfc3339())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_read_like_money() {
        assert_eq!(format_amount(35590, "CNY"), "¥355.90");
        assert_eq!(format_amount(5, "USD"), "US$0.05");
        assert_eq!(format_amount(-1200, "CNY"), "-¥12.00");
        assert_eq!(format_amount(1200, "JPY"), "JPY 1200");
    }

    #[test]
    fn every_user_facing_event_has_both_locales() {
        let data = json!({"orderId": "o1", "orderAmount": 35590, "currency": "CNY", "amount": 300,
            "expiresAt": "2026-11-22T08:15:00.000Z", "availableAt": "2026-11-29T08:00:00.000Z"});
        for event in [
            EventType::OrderCreated,
            EventType::OrderPaid,
            EventType::OrderPaymentFailed,
            EventType::OrderExpired,
            EventType::OrderCancelled,
            EventType::RebateCredited,
            EventType::RebateReversed,
        ] {
            let (zh_title, zh) = render(event, &data, Locale::ZhCn).unwrap();
            let (en_title, en) = render(event, &data, Locale::En).unwrap();
            assert!(zh.contains("o1") && en.contains("o1"), "{event:?}");
            assert_ne!(zh_title, en_title);
            assert!(!en.is_ascii() || en_title.is_ascii());
        }
        let (_, paid) = render(EventType::OrderPaid, &data, Locale::ZhCn).unwrap();
        assert!(paid.contains("¥355.90"), "{paid}");
        let (_, rebate) = render(EventType::RebateCredited, &data, Locale::En).unwrap();
        assert!(rebate.contains("¥3.00"), "{rebate}");
        assert!(render(EventType::PaymentSucceeded, &data, Locale::En).is_none());
        // Issue 28.9: every refund is told, once, from its PaymentRefunded.
        let refund = json!({"payment": {"orderId": "o1", "userId": "u1", "amount": 35590,
            "currency": "CNY"}, "providerRefundId": "r1", "reason": "cancelled"});
        for locale in [Locale::ZhCn, Locale::En] {
            let (_, told) = render(EventType::PaymentRefunded, &refund, locale).unwrap();
            assert!(told.contains("o1") && told.contains("¥355.90"), "{told}");
        }
        assert_eq!(subject(EventType::PaymentRefunded, &refund)["userId"], "u1");
        assert!(render(EventType::OrderRefunded, &data, Locale::En).is_none());
    }

    #[test]
    fn preferences_are_validated_field_by_field() {
        let parse = |v: Value| -> Result<Preferences, ApiError> {
            let p: Preferences = crate::http::parse_json(v.to_string().as_bytes())?;
            p.validate().map(|_| p)
        };
        let field_of = |v: Value| parse(v).unwrap_err().message;
        assert_eq!(parse(json!({})).unwrap(), Preferences::default());
        assert_eq!(parse(json!({"locale": "en"})).unwrap().locale, Locale::En);
        assert!(field_of(json!({"locale": "fr"})).contains("locale"));
        assert!(field_of(json!({"channels": {"sms": true}})).contains("channels.sms"));
        assert!(field_of(json!({"channels": {"inbox": false}})).contains("channels.inbox"));
        assert!(field_of(json!({"phoneNumber": "13800138000"})).contains("phoneNumber"));
        assert!(field_of(json!({"email": "a@b"})).contains("email"));
        // Issue 28.8: what the old check let through.
        for bad in [
            "a@b..c",
            "a@-.-",
            "<a@b.c>",
            "a\u{200b}@b.com",
            "a@b\u{202e}.com",
            "a b@c.com",
            ".a@b.com",
            "a..b@c.com",
            "a@b.c",
            "a@b.123",
            "a@@b.com",
            "a@-b.com",
            "\"q\"@b.com",
        ] {
            assert!(!is_deliverable_email(bad), "{bad:?}");
        }
        for good in [
            "li@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'brien@xn--bcher-kva.de",
            "x_y-z@a-b.io",
        ] {
            assert!(is_deliverable_email(good), "{good:?}");
        }
        assert!(field_of(json!({"emails": "a@b.c"})).contains("emails"));
        let ok = parse(
            json!({"locale": "zh-CN", "channels": {"sms": true, "email": true},
            "phoneNumber": "+8613800138000", "email": "li@example.com"}),
        )
        .unwrap();
        assert!(ok.channels.sms && ok.channels.email);
    }
}
