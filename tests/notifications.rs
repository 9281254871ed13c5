//! The notifier in-process against DynamoDB Local: one inbox message per
//! event in the user's locale, whatever the redeliveries; a failing channel
//! is retried without blocking or duplicating the others; the preferences
//! and inbox routes.

use std::sync::Mutex;

use adapters::notifications::{Inbox, Notifications};
use domain::events::{Envelope, EventType};
use domain::notifications::{Channel, ChannelError, Notification, Preferences};
use notifier::Notifier;
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};

/// Records what it sends; fails while `failing` is set.
#[derive(Default)]
struct FakeChannel {
    name: &'static str,
    sent: Mutex<Vec<String>>,
    failing: Mutex<bool>,
}

impl Channel for FakeChannel {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wanted(&self, preferences: &Preferences) -> bool {
        match self.name {
            "sms" => preferences.channels.sms,
            _ => preferences.channels.email,
        }
    }

    async fn deliver(&self, n: &Notification, _: &Preferences) -> Result<(), ChannelError> {
        if *self.failing.lock().unwrap() {
            return Err(ChannelError {
                channel: self.name,
                reason: "provider down".into(),
            });
        }
        self.sent.lock().unwrap().push(n.notification_id.clone());
        Ok(())
    }
}

struct Fixture {
    notifier: Notifier<FakeChannel, FakeChannel>,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = Notifications::new(db.client.clone(), db.tables.clone());
    Fixture {
        notifier: Notifier {
            store: store.clone(),
            inbox: Inbox { store },
            sms: FakeChannel {
                name: "sms",
                ..Default::default()
            },
            email: FakeChannel {
                name: "email",
                ..Default::default()
            },
            markers_table: db.tables.processed_events.clone(),
        },
    }
}

fn event(event_type: EventType, user: &str, order_id: &str) -> String {
    let data = json!({"orderId": order_id, "userId": user, "orderAmount": 35590, "currency": "CNY",
        "expiresAt": "2026-11-22T08:15:00.000Z", "amount": 300, "availableAt": "2026-11-29T00:00:00.000Z"});
    let envelope = Envelope::new(event_type, "corr", &domain::clock::now_rfc3339(), &data).unwrap();
    serde_json::to_string(&envelope).unwrap()
}

/// A `PaymentRefunded` as the payments store writes it.
fn refund_event(user: &str, order_id: &str) -> String {
    let data = json!({"payment": {"orderId": order_id, "userId": user, "amount": 35590,
        "currency": "CNY"}, "providerRefundId": "r-1", "reason": "cancelled by the customer"});
    let envelope = Envelope::new(
        EventType::PaymentRefunded,
        "corr",
        &domain::clock::now_rfc3339(),
        &data,
    )
    .unwrap();
    serde_json::to_string(&envelope).unwrap()
}

impl Fixture {
    async fn deliver(&self, body: &str) -> Vec<String> {
        failed_ids(
            &self
                .notifier
                .handle_batch(batch(vec![message("m", body)]))
                .await,
        )
    }

    async fn call(&self, req: lambda_http::Request, route: &str) -> (u16, Value) {
        let store = &self.notifier.store;
        let response = match route {
            "GET /me/notifications" => list_notifications::handle(store, req).await,
            "GET /me/preferences" => get_preferences::handle(store, req).await,
            _ => put_preferences::handle(store, req).await,
        };
        parts(&http_edge::http::into_response(response))
    }

    async fn inbox(&self, user: &str) -> Vec<Value> {
        let req = ApiRequest::get("/me/notifications")
            .as_user(user)
            .query("limit", "100")
            .build();
        let (status, body) = self.call(req, "GET /me/notifications").await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    async fn set_preferences(&self, user: &str, preferences: Value) -> (u16, Value) {
        let req = ApiRequest::put("/me/preferences")
            .as_user(user)
            .json(preferences)
            .build();
        self.call(req, "PUT /me/preferences").await
    }
}

#[tokio::test]
async fn each_event_reaches_the_inbox_once_in_the_users_locale() {
    let f = fixture().await;
    let paid = event(EventType::OrderPaid, "u1", "o1");
    for _ in 0..5 {
        assert!(f.deliver(&paid).await.is_empty());
    }
    let inbox = f.inbox("u1").await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["title"], "支付成功", "zh-CN by default");
    assert_eq!(inbox[0]["orderId"], "o1");
    assert!(inbox[0]["body"].as_str().unwrap().contains("¥355.90"));

    let (status, _) = f.set_preferences("u1", json!({"locale": "en"})).await;
    assert_eq!(status, 200);
    assert!(f.deliver(&refund_event("u1", "o1")).await.is_empty());
    let inbox = f.inbox("u1").await;
    assert_eq!(inbox.len(), 2);
    assert_eq!(
        inbox[0]["title"], "Refund issued",
        "newest first, in English"
    );
    assert!(f.inbox("u2").await.is_empty(), "own inbox only");
    // Not user-facing: nothing.
    assert!(
        f.deliver(&event(EventType::PaymentSucceeded, "u1", "o1"))
            .await
            .is_empty()
    );
    assert_eq!(f.inbox("u1").await.len(), 2);
}

#[tokio::test]
async fn a_failing_channel_is_retried_without_blocking_or_duplicating_the_others() {
    let f = fixture().await;
    let (status, body) = f
        .set_preferences(
            "u3",
            json!({"channels": {"sms": true, "email": true}, "phoneNumber": "+8613800138000",
                   "email": "u3@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    *f.notifier.sms.failing.lock().unwrap() = true;
    let created = event(EventType::OrderCreated, "u3", "o3");
    assert_eq!(
        f.deliver(&created).await,
        ["m"],
        "the SMS failure fails the message"
    );
    assert_eq!(f.deliver(&created).await, ["m"]);
    assert_eq!(
        f.inbox("u3").await.len(),
        1,
        "the inbox got it at once, once"
    );
    assert_eq!(
        f.notifier.email.sent.lock().unwrap().len(),
        1,
        "email sent once"
    );
    assert!(f.notifier.sms.sent.lock().unwrap().is_empty());

    *f.notifier.sms.failing.lock().unwrap() = false;
    assert!(f.deliver(&created).await.is_empty(), "the retry succeeds");
    assert!(f.deliver(&created).await.is_empty());
    assert_eq!(
        f.notifier.sms.sent.lock().unwrap().len(),
        1,
        "SMS sent once"
    );
    assert_eq!(f.notifier.email.sent.lock().unwrap().len(), 1);
    assert_eq!(f.inbox("u3").await.len(), 1);
}

#[tokio::test]
async fn preferences_are_the_callers_own_and_validated() {
    let f = fixture().await;
    let get = |user: &str| ApiRequest::get("/me/preferences").as_user(user).build();
    let (status, defaults) = f.call(get("u4"), "GET /me/preferences").await;
    assert_eq!(status, 200);
    assert_eq!(
        defaults,
        json!({"locale": "zh-CN", "channels": {"inbox": true, "sms": false, "email": false}})
    );
    for (body, field) in [
        (json!({"locale": "de"}), "locale"),
        (json!({"channels": {"email": true}}), "channels.email"),
        (json!({"phoneNumber": "+0123"}), "phoneNumber"),
        (json!({"email": "not an address"}), "email"),
        (json!({"userId": "u5"}), "userId"),
        (json!(["en"]), "object"),
    ] {
        let (status, error) = f.set_preferences("u4", body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {error} should name {field}"
        );
    }
    let (status, _) = f
        .set_preferences("u4", json!({"locale": "en", "email": "a@example.com"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        f.call(get("u4"), "GET /me/preferences").await.1["locale"],
        "en"
    );
    assert_eq!(
        f.call(get("u5"), "GET /me/preferences").await.1["locale"],
        "zh-CN"
    );
}

#[tokio::test]
async fn the_inbox_pages_newest_first_and_tokens_stay_with_their_user() {
    let f = fixture().await;
    for i in 0..3 {
        f.deliver(&event(EventType::OrderCreated, "u6", &format!("o{i}")))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let req = ApiRequest::get("/me/notifications")
        .as_user("u6")
        .query("limit", "2")
        .build();
    let (_, page) = f.call(req, "GET /me/notifications").await;
    let orders: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["orderId"].clone())
        .collect();
    assert_eq!(orders, [json!("o2"), json!("o1")]);
    let token = page["nextToken"].as_str().unwrap();
    let req = ApiRequest::get("/me/notifications")
        .as_user("u7")
        .query("nextToken", token)
        .build();
    let (status, _) = f.call(req, "GET /me/notifications").await;
    assert_eq!(status, 400);
}
