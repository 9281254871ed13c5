//! The notifier in-process against DynamoDB Local: one inbox message per
//! event in the user's locale, whatever the redeliveries; a failing channel
//! is retried without blocking or duplicating the others; the preferences
//! and inbox routes.

use std::sync::Mutex;

use adapters::notifications::{DailyCap, code_hash};
use adapters::notifications::{Inbox, Notifications};
use domain::events::{Envelope, EventType};
use domain::notifications::verification::{
    CODE_TTL_SECONDS, Contact, MAX_ATTEMPTS, PendingCode, SmsCountries,
};
use domain::notifications::{Channel, ChannelError, Notification, Preferences};
use notifier::Notifier;
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};

fn china() -> SmsCountries {
    SmsCountries::parse("86").unwrap()
}

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
            "POST /me/contact-verifications/confirm" => {
                confirm_contact_verification::handle(store, req).await
            }
            _ => put_preferences::handle(store, &china(), req).await,
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
        json!({"locale": "zh-CN", "channels": {"inbox": true, "sms": false, "email": false},
               "verified": {"sms": false, "email": false}})
    );
    for (body, field) in [
        (json!({"locale": "de"}), "locale"),
        (json!({"channels": {"email": true}}), "channels.email"),
        (json!({"phoneNumber": "+0123"}), "phoneNumber"),
        // Issue 26.3: SMS go to the configured countries only.
        (json!({"phoneNumber": "+447946000000"}), "+86"),
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

/// A code as the start route stores it, sent `ago` seconds before now.
fn code_for(user: &str, phone: &str, code: &str, ago: i64) -> PendingCode {
    let now = domain::clock::now().unix_timestamp() - ago;
    PendingCode {
        destination: phone.into(),
        code_hash: code_hash(user, phone, code),
        sent_at: now,
        expires_at: now + CODE_TTL_SECONDS,
        attempts: 0,
    }
}

/// Issue 29.3: a number is proven once, by the code sent to it; racing
/// requests send one code; wrong guesses are counted and used up; a new
/// number is unverified again.
#[tokio::test]
async fn a_phone_number_is_proven_once_by_its_code() {
    let f = fixture().await;
    let store = &f.notifier.store;
    let phone = "+8613800138001";
    let (status, answer) = f
        .set_preferences(
            "v1",
            json!({"channels": {"sms": true}, "phoneNumber": phone}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["verified"], json!({"sms": false, "email": false}));
    assert!(!store.preferences("v1").await.unwrap().may_use(Contact::Sms));

    // Eight racing sends within the resend window: one code is stored.
    let sends = (0..8).map(|i| {
        let code = code_for("v1", phone, &format!("{i:06}"), 0);
        async move { store.put_code("v1", Contact::Sms, &code).await.unwrap() }
    });
    let stored = futures::future::join_all(sends).await;
    assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{stored:?}");
    let winner = stored.iter().position(|s| *s).unwrap();
    let code = format!("{winner:06}");

    let confirm = |code: &str| {
        let req = ApiRequest::post("/me/contact-verifications/confirm")
            .as_user("v1")
            .json(json!({"channel": "sms", "code": code}))
            .build();
        f.call(req, "POST /me/contact-verifications/confirm")
    };
    let wrong = if code == "999999" { "999998" } else { "999999" };
    let (status, error) = confirm(wrong).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "code");
    assert_eq!(error["error"]["attemptsLeft"], MAX_ATTEMPTS - 1);
    let (status, answer) = confirm(&code).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["verified"], true);
    assert_eq!(answer["destination"], "+86*******8001");
    // Used once.
    let (status, error) = confirm(&code).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "NO_OPEN_CODE");
    assert!(store.preferences("v1").await.unwrap().may_use(Contact::Sms));

    // Preferences replaced with the same number: still proven; another
    // number: not, until its own code is confirmed.
    let (_, same) = f
        .set_preferences(
            "v1",
            json!({"locale": "en", "channels": {"sms": true}, "phoneNumber": phone}),
        )
        .await;
    assert_eq!(same["verified"]["sms"], true, "{same}");
    let (_, other) = f
        .set_preferences(
            "v1",
            json!({"channels": {"sms": true}, "phoneNumber": "+8613800138002"}),
        )
        .await;
    assert_eq!(other["verified"]["sms"], false, "{other}");
    assert!(!store.preferences("v1").await.unwrap().may_use(Contact::Sms));
}

/// Guesses are capped: after the last one the code is closed, even for the
/// right digits; a code sent to a number since replaced proves nothing.
#[tokio::test]
async fn a_code_takes_five_guesses_and_only_for_its_number() {
    let f = fixture().await;
    let store = &f.notifier.store;
    let phone = "+8613800138003";
    f.set_preferences(
        "v2",
        json!({"channels": {"sms": true}, "phoneNumber": phone}),
    )
    .await;
    // Sent two minutes ago, so that a new one may follow below.
    assert!(
        store
            .put_code("v2", Contact::Sms, &code_for("v2", phone, "123456", 120))
            .await
            .unwrap()
    );
    let confirm = |code: &'static str| {
        let req = ApiRequest::post("/me/contact-verifications/confirm")
            .as_user("v2")
            .json(json!({"channel": "sms", "code": code}))
            .build();
        f.call(req, "POST /me/contact-verifications/confirm")
    };
    for left in (0..MAX_ATTEMPTS).rev() {
        let (status, error) = confirm("000000").await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["attemptsLeft"], left);
    }
    let (status, error) = confirm("123456").await;
    assert_eq!(
        (status, error["error"]["code"].clone()),
        (409, json!("NO_OPEN_CODE"))
    );

    // A fresh code replaces the used-up one; then the number changes: the
    // code is for the old one.
    assert!(
        store
            .put_code("v2", Contact::Sms, &code_for("v2", phone, "654321", 0))
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_code("v2", Contact::Sms, &code_for("v2", phone, "111111", 0))
            .await
            .unwrap(),
        "no second code within a minute"
    );
    f.set_preferences("v2", json!({"phoneNumber": "+8613800138004"}))
        .await;
    let (status, _) = confirm("654321").await;
    assert_eq!(status, 409);
    for bad in [
        json!({"channel": "sms", "code": "12345"}),
        json!({"channel": "fax", "code": "123456"}),
    ] {
        let req = ApiRequest::post("/me/contact-verifications/confirm")
            .as_user("v2")
            .json(bad.clone())
            .build();
        let (status, error) = f.call(req, "POST /me/contact-verifications/confirm").await;
        assert_eq!(status, 400, "{bad}: {error}");
    }
}

/// Issue 26.3: the daily cap holds under racing senders: of 16 racing
/// messages with a cap of 10, exactly 10 go out; another user's are apart.
#[tokio::test]
async fn the_daily_cap_holds_under_racing_senders() {
    let db = TestDb::new().await;
    let cap = DailyCap {
        client: db.client.clone(),
        table: db.tables.rate_limits.clone(),
        contact: Contact::Sms,
        per_day: 10,
    };
    let now = domain::clock::now();
    let takes = (0..16).map(|_| cap.take("capped", now));
    let taken = futures::future::join_all(takes).await;
    let granted = taken.iter().filter(|t| *t.as_ref().unwrap()).count();
    assert_eq!(granted, 10, "{taken:?}");
    assert!(cap.take("someone-else", now).await.unwrap());
    let tomorrow = now + time::Duration::days(1);
    assert!(
        cap.take("capped", tomorrow).await.unwrap(),
        "a new day, a new cap"
    );
}
