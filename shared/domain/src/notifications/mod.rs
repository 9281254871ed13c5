//! Notifications: users' preferences, the message templates in both
//! locales, and the port a delivery channel implements.

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FieldError;
use crate::events::EventType;

pub mod verification;

use verification::{Contact, Verified};

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
    /// Which of the two are proven (never taken from a request: the store
    /// fills it in from the codes confirmed).
    #[serde(skip)]
    pub verified: Verified,
}

impl Preferences {
    /// The destination `contact` sends to, if one is set.
    pub fn destination(&self, contact: Contact) -> Option<&str> {
        match contact {
            Contact::Sms => self.phone_number.as_deref(),
            Contact::Email => self.email.as_deref(),
        }
    }

    /// Whether `contact` is on and its destination proven.
    pub fn may_use(&self, contact: Contact) -> bool {
        let on = match contact {
            Contact::Sms => self.channels.sms,
            Contact::Email => self.channels.email,
        };
        on && self.destination(contact).is_some() && self.verified.of(contact)
    }
}

/// `GET/PUT /me/preferences` answer: the preferences and which of their
/// destinations are proven.
#[derive(Debug, Clone, Serialize)]
pub struct PreferencesView<'a> {
    #[serde(flatten)]
    pub preferences: &'a Preferences,
    pub verified: Verified,
}

impl<'a> From<&'a Preferences> for PreferencesView<'a> {
    fn from(preferences: &'a Preferences) -> Self {
        Self {
            preferences,
            verified: preferences.verified,
        }
    }
}

impl Preferences {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !self.channels.inbox {
            return Err(FieldError::new(
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
                return Err(FieldError::new(
                    "phoneNumber",
                    "must be an E.164 number such as +8613800138000",
                ));
            }
        }
        if let Some(email) = &self.email
            && !is_deliverable_email(email)
        {
            return Err(FieldError::new(
                "email",
                "must be an email address such as name@example.com (ASCII letters, digits and \
                 .!#$%&'*+/=?^_`{|}~- before the @, a domain name of dot-separated labels after it)",
            ));
        }
        if self.channels.sms && self.phone_number.is_none() {
            return Err(FieldError::new(
                "channels.sms",
                "needs a phoneNumber to send to",
            ));
        }
        if self.channels.email && self.email.is_none() {
            return Err(FieldError::new(
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
        let digits = crate::money::to_decimal(amount);
        format!("{sign}{symbol}{}", digits.trim_start_matches('-'))
    }
}

/// The part of an event's data that names the user and the order: the
/// data itself, for `PaymentRefunded` (`{payment, providerRefundId,
/// reason}`) its payment, for `OrderLinesRefunded` (`{order,
/// refundRequest}`) the request (its amount is what went back).
pub fn subject(event_type: EventType, data: &Value) -> &Value {
    match event_type {
        EventType::PaymentRefunded => data.get("payment").unwrap_or(data),
        EventType::OrderLinesRefunded => data.get("refundRequest").unwrap_or(data),
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
    let withdrawal = text("withdrawalId");
    let why = text("failureReason");
    let carrier = data["shipment"]["carrier"].as_str().unwrap_or("");
    let tracking = data["shipment"]["trackingNumber"].as_str().unwrap_or("");
    let zh = locale == Locale::ZhCn;
    let channel = match (data["channel"].as_str(), zh) {
        (Some("WECHAT_PAY"), true) => "微信零钱",
        (Some("WECHAT_PAY"), false) => "WeChat balance",
        (_, true) => "支付宝账户",
        (_, false) => "Alipay account",
    };
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
        EventType::OrderShipped if zh => (
            "订单已发货",
            format!("订单 {order} 已由 {carrier} 发出，运单号 {tracking}。"),
        ),
        EventType::OrderShipped => (
            "Order shipped",
            format!("Order {order} is on its way with {carrier}, tracking number {tracking}."),
        ),
        EventType::OrderCompleted if zh => (
            "订单已完成",
            format!("订单 {order} 已确认收货，感谢您的购买。"),
        ),
        EventType::OrderCompleted => (
            "Order completed",
            format!("Order {order} is delivered and complete. Thank you for shopping with us."),
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
        EventType::OrderLinesRefunded if zh => (
            "退款成功",
            format!("您对订单 {order} 的退款申请已通过，{amount} 已原路退回。"),
        ),
        EventType::OrderLinesRefunded => (
            "Refund issued",
            format!(
                "Your refund request for order {order} is approved: {amount} is on its way back to you."
            ),
        ),
        // A credit has its release time only once its order is received.
        EventType::RebateCredited if zh && available.is_empty() => (
            "返利已入账",
            format!("订单 {order} 为您赚取返利 {amount}，确认收货且售后期结束后可用。"),
        ),
        EventType::RebateCredited if available.is_empty() => (
            "Rebate credited",
            format!(
                "Order {order} earned you a {amount} rebate, available once the order is received and its after-sales period has ended."
            ),
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
        EventType::WithdrawalPaid if zh => (
            "提现成功",
            format!("提现 {withdrawal} 的 {amount} 已转入您的{channel}。"),
        ),
        EventType::WithdrawalPaid => (
            "Withdrawal paid",
            format!("{amount} of withdrawal {withdrawal} is paid into your {channel}."),
        ),
        EventType::WithdrawalFailed if zh => (
            "提现失败",
            format!("提现 {withdrawal} 未能到账（{why}），{amount} 已退回您的可用返利。"),
        ),
        EventType::WithdrawalFailed => (
            "Withdrawal failed",
            format!(
                "Withdrawal {withdrawal} could not be paid ({why}); {amount} is back in your available rebates."
            ),
        ),
        EventType::WithdrawalRejected if zh => (
            "提现未通过审核",
            format!("提现 {withdrawal} 未通过审核（{why}），{amount} 已退回您的可用返利。"),
        ),
        EventType::WithdrawalRejected => (
            "Withdrawal declined",
            format!(
                "Withdrawal {withdrawal} was declined ({why}); {amount} is back in your available rebates."
            ),
        ),
        EventType::PaymentSucceeded
        | EventType::PaymentFailed
        | EventType::OrderRefunded
        | EventType::WithdrawalRequested
        | EventType::WithdrawalApproved => {
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
        // A credit before its order's receipt has no release time yet.
        let unscheduled = json!({"orderId": "o1", "currency": "CNY", "amount": 300});
        for locale in [Locale::ZhCn, Locale::En] {
            let (_, told) = render(EventType::RebateCredited, &unscheduled, locale).unwrap();
            assert!(told.contains("¥3.00") && !told.contains("  "), "{told}");
            assert!(
                told.contains("received") || told.contains("确认收货"),
                "{told}"
            );
        }
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
        // Withdrawals name themselves, the amount, the channel and why
        // one did not pay.
        let withdrawal = json!({"withdrawalId": "w1", "userId": "u1", "amount": 3000,
            "currency": "CNY", "channel": "WECHAT_PAY", "failureReason": "OPENID_INVALID"});
        for locale in [Locale::ZhCn, Locale::En] {
            for event in [
                EventType::WithdrawalPaid,
                EventType::WithdrawalFailed,
                EventType::WithdrawalRejected,
            ] {
                let (_, told) = render(event, &withdrawal, locale).unwrap();
                assert!(told.contains("w1") && told.contains("¥30.00"), "{told}");
                assert_eq!(
                    told.contains("OPENID_INVALID"),
                    event != EventType::WithdrawalPaid,
                    "{told}"
                );
            }
            let (_, paid) = render(EventType::WithdrawalPaid, &withdrawal, locale).unwrap();
            assert!(paid.contains("WeChat") || paid.contains("微信"), "{paid}");
            assert!(render(EventType::WithdrawalRequested, &withdrawal, locale).is_none());
        }
        // Shipping names the carrier and the tracking number.
        let shipped = json!({"orderId": "o1", "shipment": {"carrier": "顺丰速运",
            "trackingNumber": "SF123", "shippedAt": "2026-12-02T10:00:00Z"}});
        for locale in [Locale::ZhCn, Locale::En] {
            let (_, told) = render(EventType::OrderShipped, &shipped, locale).unwrap();
            assert!(
                told.contains("顺丰速运") && told.contains("SF123"),
                "{told}"
            );
            let (_, done) = render(EventType::OrderCompleted, &shipped, locale).unwrap();
            assert!(done.contains("o1"), "{done}");
        }
    }

    #[test]
    fn preferences_are_validated_field_by_field() {
        let parse = |v: Value| -> Result<Preferences, FieldError> {
            let p: Preferences = serde_json::from_value(v.clone())
                .map_err(|e| FieldError::new("body", format!("{e} in {v}")))?;
            p.validate().map(|_| p)
        };
        let field_of = |v: Value| parse(v).unwrap_err().to_string();
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
