//! Payments in-process against official DynamoDB Local: initiation,
//! ownership, idempotency, and the signed provider callback under
//! duplicates, forgeries, replays and mismatches.

use std::sync::Arc;
use std::time::Duration;

use adapters::orders::Orders;
use adapters::payments::sandbox::SandboxProvider;
use adapters::payments::{CallbackOutcome, NotificationOutcome, Payments};
use adapters::secrets::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::orders::OrderStatus;
use domain::payments::{RefundResult, RefundStatus};
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;

const SECRET: &str = "whsec_test";

struct Fixture {
    db: TestDb,
    orders: Orders,
    payments: Payments,
    provider: SandboxProvider,
}

fn respond(result: http_edge::ApiResult) -> (u16, Value) {
    parts(&http_edge::http::into_response(result))
}

fn now() -> i64 {
    domain::clock::now().unix_timestamp()
}

async fn fixture() -> Arc<Fixture> {
    let db = TestDb::new().await;
    db.add_product("tea", 1999, 100).await;
    let orders = Orders::new(db.client.clone(), db.tables.clone());
    let payments = Payments::new(db.client.clone(), db.tables.clone());
    Arc::new(Fixture {
        db,
        orders,
        payments,
        provider: SandboxProvider::new(SECRET, "https://sandbox.test"),
    })
}

impl Fixture {
    async fn order(&self, user: &str, quantity: i64) -> String {
        self.order_within(user, quantity, Duration::from_secs(900))
            .await
    }

    /// An order whose payment window is `window`.
    async fn order_within(&self, user: &str, quantity: i64, window: Duration) -> String {
        let req = ApiRequest::post("/orders")
            .as_user(user)
            .json(json!({"productId": "tea", "quantity": quantity}));
        let (status, order) =
            respond(create_order::handle(&self.orders, window, req.build()).await);
        assert_eq!(status, 201);
        order["orderId"].as_str().unwrap().to_owned()
    }

    async fn initiate(&self, req: ApiRequest) -> (u16, Value) {
        respond(
            initiate_payment::handle(&self.orders, &self.payments, &self.provider, req.build())
                .await,
        )
    }

    async fn pay(&self, user: &str, order_id: &str, method: &str) -> (u16, Value) {
        self.initiate(
            ApiRequest::post("/payments")
                .as_user(user)
                .json(json!({"orderId": order_id, "paymentMethod": method})),
        )
        .await
    }

    async fn get(&self, user: &str, payment_id: &str) -> (u16, Value) {
        let req = ApiRequest::get("/payments/{paymentId}")
            .path_param("paymentId", payment_id)
            .as_user(user);
        respond(get_payment::handle(&self.payments, req.build()).await)
    }

    /// Sends a callback body with a signature header (None: no header).
    async fn notify_raw(&self, body: &str, signature: Option<String>) -> (u16, Value) {
        self.notify_via(&self.provider, body, signature).await
    }

    /// The same, checked by another provider than the fixture's.
    async fn notify_via(
        &self,
        provider: &SandboxProvider,
        body: &str,
        signature: Option<String>,
    ) -> (u16, Value) {
        let mut req = ApiRequest::post("/payments/notify")
            .header("content-type", "application/json")
            .raw_body(body);
        if let Some(sig) = signature {
            req = req.header("x-payment-signature", &sig);
        }
        respond(payment_result_notify::handle(&self.payments, provider, req.build()).await)
    }

    async fn notify(&self, payment: &Value, status: &str) -> (u16, Value) {
        let body = callback(payment, status).to_string();
        self.notify_raw(
            &body,
            Some(self.provider.sign(now(), body.as_bytes()).await.unwrap()),
        )
        .await
    }

    async fn status_of(&self, payment_id: &str) -> String {
        let p = self.payments.get(payment_id).await.unwrap().unwrap();
        serde_json::to_value(p.payment_status)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn events(&self, event_type: &str, payment_id: &str) -> usize {
        let out = self
            .db
            .client
            .scan()
            .table_name(&self.db.tables.events)
            .send()
            .await
            .unwrap();
        out.items()
            .iter()
            .filter_map(|i| match i.get("envelope") {
                Some(AttributeValue::S(s)) => serde_json::from_str::<Value>(s).ok(),
                _ => None,
            })
            .filter(|e| e["type"] == event_type && e["data"]["paymentId"] == payment_id)
            .count()
    }

    async fn audit_outcomes(&self, payment_id: &str) -> Vec<String> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.db.tables.payment_callbacks)
            .key_condition_expression("paymentId = :p")
            .expression_attribute_values(":p", AttributeValue::S(payment_id.into()))
            .send()
            .await
            .unwrap();
        out.items()
            .iter()
            .map(|i| i["outcome"].as_s().unwrap().clone())
            .collect()
    }
}

fn callback(payment: &Value, status: &str) -> Value {
    json!({
        "paymentId": payment["paymentId"],
        "orderId": payment["orderId"],
        "paymentStatus": status,
        "amount": payment["amount"],
        "currency": payment["currency"],
        "providerTransactionId": "tx-123",
    })
}

#[tokio::test]
async fn initiating_a_payment_for_an_order() {
    let f = fixture().await;
    let order_id = f.order("u1", 2).await;
    let (status, payment) = f.pay("u1", &order_id, "ALIPAY").await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(
        payment["amount"], 3998,
        "the order's amount, not a client figure"
    );
    assert_eq!(payment["currency"], "CNY");
    assert_eq!(payment["paymentStatus"], "PENDING");
    assert_eq!(payment["userId"], "u1");
    let id = payment["paymentId"].as_str().unwrap();
    assert_eq!(
        payment["paymentUrl"],
        format!("https://sandbox.test/pay/{id}").as_str()
    );
    assert!(
        payment["qrCode"]
            .as_str()
            .unwrap()
            .starts_with("sandbox://alipay/")
    );
    let order = f.orders.get(&order_id).await.unwrap().unwrap();
    assert_eq!(
        payment["expiresAt"],
        order.expires_at.as_str(),
        "no later than the order"
    );
    assert_eq!(f.get("u1", id).await, (200, payment.clone()));

    // The same method again returns the pending payment.
    let (status, again) = f.pay("u1", &order_id, "ALIPAY").await;
    assert_eq!((status, &again), (200, &payment));
    // Another method replaces it; the old one expires.
    let (status, card) = f.pay("u1", &order_id, "CARD").await;
    assert_eq!(status, 201);
    assert_ne!(card["paymentId"], payment["paymentId"]);
    assert_eq!(card["qrCode"], Value::Null);
    assert_eq!(f.status_of(id).await, "EXPIRED");
}

#[tokio::test]
async fn only_the_owner_pays_only_payable_orders() {
    let f = fixture().await;
    let order_id = f.order("owner", 1).await;
    let (status, body) = f.pay("intruder", &order_id, "CARD").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ORDER_NOT_FOUND"))
    );
    let (status, body) = f
        .initiate(
            ApiRequest::post("/payments")
                .as_user("owner")
                .json(json!({"orderId": order_id, "paymentMethod": "CARD", "userId": "someone"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, body) = f
        .initiate(
            ApiRequest::post("/payments")
                .as_user("owner")
                .json(json!({"orderId": order_id, "paymentMethod": "BITCOIN"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("paymentMethod"))
    );
    let (status, body) = f
        .initiate(
            ApiRequest::post("/payments")
                .as_user("owner")
                .json(json!({"orderId": order_id, "paymentMethod": "CARD", "amount": 1})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (_, payment) = f.pay("owner", &order_id, "CARD").await;
    let (status, _) = f
        .get("intruder", payment["paymentId"].as_str().unwrap())
        .await;
    assert_eq!(status, 404);

    // A cancelled order is not payable.
    let cancelled = f.order("owner", 1).await;
    let req = ApiRequest::post("/orders/{orderId}/cancel")
        .path_param("orderId", &cancelled)
        .as_user("owner");
    respond(cancel_order::handle(&f.orders, &f.payments, &f.provider, req.build()).await);
    let (status, body) = f.pay("owner", &cancelled, "CARD").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_PAYABLE"))
    );
}

#[tokio::test]
async fn idempotent_initiation() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let req = |method: &str| {
        ApiRequest::post("/payments")
            .as_user("u1")
            .header("Idempotency-Key", "pay-1")
            .json(json!({"orderId": order_id, "paymentMethod": method}))
    };
    let (s1, first) = f.initiate(req("WECHAT_PAY")).await;
    let (s2, second) = f.initiate(req("WECHAT_PAY")).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, second);
    let (s3, body) = f.initiate(req("CARD")).await;
    assert_eq!(
        (s3, body["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_KEY_REUSED"))
    );
}

/// Issue 27.3: a retry with the same key and body gets the original 201
/// whatever the order became since: paid, or cancelled.
#[tokio::test]
async fn an_idempotent_retry_replays_after_the_order_moved_on() {
    let f = fixture().await;
    for (label, ends) in [("paid", "SUCCESS"), ("cancelled", "")] {
        let order_id = f.order("u1", 1).await;
        let req = || {
            ApiRequest::post("/payments")
                .as_user("u1")
                .header("Idempotency-Key", &format!("replay-{label}"))
                .json(json!({"orderId": order_id, "paymentMethod": "ALIPAY"}))
        };
        let (status, first) = f.initiate(req()).await;
        assert_eq!(status, 201, "{first}");
        let order = f.orders.get(&order_id).await.unwrap().unwrap();
        if ends == "SUCCESS" {
            f.notify(&first, "SUCCESS").await;
            f.orders
                .apply_transition_with(
                    &order,
                    domain::orders::OrderTransition::PaymentSucceeded,
                    "c",
                    &adapters::orders::TransitionContext {
                        payment_id: first["paymentId"].as_str().map(str::to_owned),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        } else {
            f.orders
                .apply_transition(&order, domain::orders::OrderTransition::Cancel, "c")
                .await
                .unwrap();
        }
        let (status, replayed) = f.initiate(req()).await;
        assert_eq!((status, &replayed), (201, &first), "{label}");
    }
}

#[tokio::test]
async fn a_valid_callback_settles_the_payment_once() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "ALIPAY").await;
    let id = payment["paymentId"].as_str().unwrap();

    let (status, body) = f.notify(&payment, "SUCCESS").await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"received": true, "applied": true, "duplicate": false})
        )
    );
    assert_eq!(f.status_of(id).await, "SUCCEEDED");
    assert_eq!(f.events("PaymentSucceeded", id).await, 1);

    // The same result again: 200, no change, no second event.
    let (status, body) = f.notify(&payment, "SUCCESS").await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));
    // A failure after the success: recorded, nothing changes, and it is
    // not called a duplicate (it is not the same result).
    let (status, body) = f.notify(&payment, "FAILED").await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"received": true, "applied": false, "duplicate": false})
        )
    );
    assert_eq!(f.status_of(id).await, "SUCCEEDED");
    assert_eq!(f.events("PaymentSucceeded", id).await, 1);
    assert_eq!(f.events("PaymentFailed", id).await, 0);
    let mut outcomes = f.audit_outcomes(id).await;
    outcomes.sort();
    assert_eq!(outcomes, ["APPLIED", "CONFLICTING_RESULT", "DUPLICATE"]);
}

/// Issue 27.1: a buyer whose first attempt failed pays within the same
/// trade; the provider's success is the truth about money and must settle.
#[tokio::test]
async fn a_success_after_a_failure_settles_the_payment() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "ALIPAY").await;
    let id = payment["paymentId"].as_str().unwrap();

    let (status, body) = f.notify(&payment, "FAILED").await;
    assert_eq!((status, body["applied"].as_bool()), (200, Some(true)));
    assert_eq!(f.status_of(id).await, "FAILED");
    // The same failure again is the duplicate; the success is not.
    let (_, body) = f.notify(&payment, "FAILED").await;
    assert_eq!(body["duplicate"], true);
    let (status, body) = f.notify(&payment, "SUCCESS").await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"received": true, "applied": true, "duplicate": false})
        )
    );
    assert_eq!(f.status_of(id).await, "SUCCEEDED");
    assert_eq!(f.events("PaymentFailed", id).await, 1);
    assert_eq!(f.events("PaymentSucceeded", id).await, 1);
    let mut outcomes = f.audit_outcomes(id).await;
    outcomes.sort();
    assert_eq!(outcomes, ["APPLIED", "APPLIED", "DUPLICATE"]);
}

/// Issue 27.1's race: successes and failures for one payment at once. The
/// success always wins, exactly once, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_successes_and_failures_always_end_succeeded_once() {
    let f = fixture().await;
    for _trial in 0..4 {
        let order_id = f.order("u1", 1).await;
        let (_, payment) = f.pay("u1", &order_id, "ALIPAY").await;
        let id = payment["paymentId"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (f, payment) = (f.clone(), payment.clone());
                let result = if i % 2 == 0 { "SUCCESS" } else { "FAILED" };
                tokio::spawn(async move { f.notify(&payment, result).await })
            })
            .collect();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
        assert_eq!(f.status_of(&id).await, "SUCCEEDED");
        assert_eq!(f.events("PaymentSucceeded", &id).await, 1);
        assert!(f.events("PaymentFailed", &id).await <= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_duplicate_callbacks_make_one_transition() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (f, payment) = (f.clone(), payment.clone());
            tokio::spawn(async move { f.notify(&payment, "SUCCESS").await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        if body["applied"] == true {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(f.events("PaymentSucceeded", &id).await, 1);
    assert_eq!(f.audit_outcomes(&id).await.len(), 10);
}

#[tokio::test]
async fn forged_stale_and_tampered_callbacks_change_nothing() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let id = payment["paymentId"].as_str().unwrap();
    let body = callback(&payment, "SUCCESS").to_string();
    let wrong_key = SandboxProvider::new("not-the-secret", "x");
    let tampered = body.replace("tx-123", "tx-999");
    let cases = [
        ("no signature", body.clone(), None),
        ("garbage", body.clone(), Some("t=1,v1=zz".to_owned())),
        (
            "wrong secret",
            body.clone(),
            Some(wrong_key.sign(now(), body.as_bytes()).await.unwrap()),
        ),
        (
            "stale",
            body.clone(),
            Some(f.provider.sign(now() - 301, body.as_bytes()).await.unwrap()),
        ),
        (
            "future",
            body.clone(),
            Some(f.provider.sign(now() + 120, body.as_bytes()).await.unwrap()),
        ),
        (
            "tampered body",
            tampered,
            Some(f.provider.sign(now(), body.as_bytes()).await.unwrap()),
        ),
    ];
    for (label, body, signature) in cases {
        let (status, answer) = f.notify_raw(&body, signature).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("INVALID_SIGNATURE")),
            "{label}: {answer}"
        );
    }
    assert_eq!(f.status_of(id).await, "PENDING");
    assert_eq!(f.events("PaymentSucceeded", id).await, 0);
    assert!(
        f.audit_outcomes(id).await.is_empty(),
        "nothing is read or written before the signature holds"
    );
}

/// The signing secret is read from SSM on the first callback; if SSM cannot
/// be reached the callback is neither accepted nor called forged: 503, so
/// the provider sends it again, and nothing is written.
#[tokio::test]
async fn a_callback_that_cannot_be_checked_is_retried_later() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let id = payment["paymentId"].as_str().unwrap();
    // Nothing listens on the discard port.
    let unreachable_ssm = system_tests::dynamo::local_config("http://127.0.0.1:9")
        .await
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let provider = SandboxProvider::with_secret(
        Credentials::in_ssm(
            &unreachable_ssm,
            "/test/payment-signing-secret",
            adapters::payments::sandbox::raw,
        ),
        "https://sandbox.test",
    );
    let body = callback(&payment, "SUCCESS").to_string();
    let signature = f.provider.sign(now(), body.as_bytes()).await.unwrap();
    let (status, answer) = f.notify_via(&provider, &body, Some(signature)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{answer}"
    );
    assert_eq!(f.status_of(id).await, "PENDING");
    assert!(f.audit_outcomes(id).await.is_empty());
    // The same callback with the secret at hand settles the payment.
    assert_eq!(f.notify(&payment, "SUCCESS").await.0, 200);
}

#[tokio::test]
async fn mismatched_amounts_are_recorded_not_paid() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let id = payment["paymentId"].as_str().unwrap();
    for (field, value) in [
        ("amount", json!(1)),
        ("currency", json!("USD")),
        ("orderId", json!("01OTHERORDER0000000000000")),
    ] {
        let mut body = callback(&payment, "SUCCESS");
        body[field] = value;
        let raw = body.to_string();
        let (status, answer) = f
            .notify_raw(
                &raw,
                Some(f.provider.sign(now(), raw.as_bytes()).await.unwrap()),
            )
            .await;
        assert_eq!(status, 409, "{field}: {answer}");
    }
    assert_eq!(f.status_of(id).await, "PENDING");
    assert_eq!(f.audit_outcomes(id).await.len(), 3);

    let unknown = json!({"paymentId": "01UNKNOWNPAYMENT000000000", "orderId": order_id, "paymentStatus": "SUCCESS", "amount": 1, "currency": "CNY", "providerTransactionId": "t"}).to_string();
    let (status, answer) = f
        .notify_raw(
            &unknown,
            Some(f.provider.sign(now(), unknown.as_bytes()).await.unwrap()),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("PAYMENT_NOT_FOUND"))
    );
}

#[tokio::test]
async fn a_callback_costs_at_most_two_round_trips() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let (client, round_trips) = system_tests::dynamo::counted_client().await;
    let counted = Payments::new(client, f.db.tables.clone());
    let body = callback(&payment, "SUCCESS").to_string();
    for label in ["first", "duplicate"] {
        round_trips.reset();
        let req = ApiRequest::post("/payments/notify")
            .header("content-type", "application/json")
            .header(
                "x-payment-signature",
                &f.provider.sign(now(), body.as_bytes()).await.unwrap(),
            )
            .raw_body(&body);
        let (status, _) =
            respond(payment_result_notify::handle(&counted, &f.provider, req.build()).await);
        assert_eq!(status, 200, "{label}");
        assert!(
            round_trips.count() <= 2,
            "{label}: {} round trips",
            round_trips.count()
        );
    }
}

#[tokio::test]
async fn a_user_starting_payments_too_fast_gets_429() {
    let f = fixture().await;
    let limited = Payments::new(f.db.client.clone(), f.db.tables.clone()).with_rate_limit(
        adapters::ratelimit::RateLimit::new(&f.db.tables.rate_limits, "initiatePayment", 1, 2),
    );
    let order = f.order("u1", 1).await;
    let start = |user: &str, method: &str| {
        ApiRequest::post("/payments")
            .as_user(user)
            .json(json!({"orderId": order, "paymentMethod": method}))
            .build()
    };
    for method in ["CARD", "ALIPAY"] {
        let (status, body) = respond(
            initiate_payment::handle(&f.orders, &limited, &f.provider, start("u1", method)).await,
        );
        assert!(status == 201 || status == 200, "{body}");
    }
    let response = http_edge::http::into_response(
        initiate_payment::handle(&f.orders, &limited, &f.provider, start("u1", "CARD")).await,
    );
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) = parts(&response);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED"))
    );
    // Another user's bucket is untouched (their request fails on ownership).
    let (status, _) = respond(
        initiate_payment::handle(&f.orders, &limited, &f.provider, start("u2", "CARD")).await,
    );
    assert_eq!(status, 404);
}

/// A customer who paid within the window keeps the order while the
/// payment's event is on its way to the order-status consumer (no consumer
/// runs here); an unpaid order due at the same moment is expired.
#[tokio::test]
async fn the_sweeper_leaves_a_paid_order_for_its_payment_event() {
    let f = fixture().await;
    let window = Duration::from_secs(2);
    let paid = f.order_within("u1", 1, window).await;
    let unpaid = f.order_within("u2", 1, window).await;
    let (status, payment) = f.pay("u1", &paid, "CARD").await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(f.notify(&payment, "SUCCESS").await.0, 200);
    tokio::time::sleep(window + Duration::from_millis(200)).await;

    let report = expire_orders::sweep(&f.orders, &f.payments, "run")
        .await
        .unwrap();
    assert_eq!((report.expired, report.awaiting_payment_event), (1, 1));
    for (id, status) in [
        (paid, OrderStatus::PendingPayment),
        (unpaid, OrderStatus::Expired),
    ] {
        let order = f.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.order_status, status);
    }
}

/// Issue 27.2: payment starts racing inside the burst all succeed; beyond it
/// they are 429 with Retry-After; contention on the bucket is never a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_payment_starts_within_the_burst_all_succeed() {
    let f = fixture().await;
    let limited = Arc::new(
        Payments::new(f.db.client.clone(), f.db.tables.clone()).with_rate_limit(
            adapters::ratelimit::RateLimit::new(&f.db.tables.rate_limits, "initiatePayment", 1, 10),
        ),
    );
    let mut order_ids = Vec::new();
    for _ in 0..16 {
        order_ids.push(f.order("burst", 1).await);
    }
    let tasks: Vec<_> = order_ids
        .into_iter()
        .map(|order_id| {
            let (f, limited) = (f.clone(), limited.clone());
            tokio::spawn(async move {
                let req = ApiRequest::post("/payments")
                    .as_user("burst")
                    .json(json!({"orderId": order_id, "paymentMethod": "ALIPAY"}))
                    .build();
                let response = http_edge::http::into_response(
                    initiate_payment::handle(&f.orders, &limited, &f.provider, req).await,
                );
                let retry_after = response.headers().get("retry-after").is_some();
                let (status, _) = parts(&response);
                (status, retry_after)
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        assert_eq!(retry_after, status == 429, "Retry-After only on 429");
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [(201, 10), (429, 6)].into(),
        "the burst of 10 all succeed, the rest are limited"
    );
}

/// Issue 27 ("also seen"): racing same-method starts without a key all get
/// the one pending payment (one 201, the rest 200), never 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_same_method_starts_share_one_pending_payment() {
    let f = fixture().await;
    for _trial in 0..3 {
        let order_id = f.order("racer", 1).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (f, order_id) = (f.clone(), order_id.clone());
                tokio::spawn(async move { f.pay("racer", &order_id, "ALIPAY").await })
            })
            .collect();
        let mut created = 0;
        let mut ids = std::collections::BTreeSet::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert!(status == 200 || status == 201, "{status} {body}");
            created += usize::from(status == 201);
            ids.insert(body["paymentId"].as_str().unwrap().to_owned());
        }
        assert_eq!((created, ids.len()), (1, 1), "{ids:?}");
    }
}

/// The sandbox, except that its refunds settle later, as WeChat Pay's and
/// Stripe's do: accepted `Pending`, the result by notification.
struct LaterRefunds(SandboxProvider);

impl domain::payments::PaymentProvider for LaterRefunds {
    fn name_for(&self, method: domain::payments::PaymentMethod) -> &'static str {
        self.0.name_for(method)
    }
    async fn checkout(
        &self,
        payment: &domain::payments::Payment,
        callback_base: &str,
    ) -> Result<domain::payments::Checkout, domain::payments::ProviderError> {
        self.0.checkout(payment, callback_base).await
    }
    async fn refund(
        &self,
        payment: &domain::payments::Payment,
        refund: &domain::payments::RefundOrder,
    ) -> Result<domain::payments::RefundReceipt, domain::payments::ProviderError> {
        let receipt = self.0.refund(payment, refund).await?;
        Ok(domain::payments::RefundReceipt {
            refund_status: RefundStatus::Pending,
            ..receipt
        })
    }
    async fn query(
        &self,
        payment: &domain::payments::Payment,
    ) -> Result<domain::payments::TradeState, domain::payments::ProviderError> {
        self.0.query(payment).await
    }
    async fn close(
        &self,
        payment: &domain::payments::Payment,
    ) -> Result<(), domain::payments::ProviderError> {
        self.0.close(payment).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_refund_result_applies_once_under_racing_copies() {
    let f = fixture().await;
    let order_id = f.order("u1", 1).await;
    let (_, payment) = f.pay("u1", &order_id, "CARD").await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(f.notify(&payment, "SUCCESS").await.0, 200);
    let paid = f.payments.get(&id).await.unwrap().unwrap();
    let later = LaterRefunds(SandboxProvider::new(SECRET, "https://sandbox.test"));
    let refunded = f
        .payments
        .refund(&paid, &later, "cancelled", "corr")
        .await
        .unwrap();
    let refund_id = format!("{id}-whole");
    let stored = f.payments.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.refunds, refunded.refunds);
    assert_eq!(
        stored.refunds[&refund_id].refund_status,
        RefundStatus::Pending
    );
    assert_eq!(stored.refunds[&refund_id].settled_at, None);

    let result = |status: RefundStatus| RefundResult {
        payment_id: id.clone(),
        refund_id: refund_id.clone(),
        provider_refund_id: format!("sandbox-refund-{refund_id}"),
        refund_status: status,
        failure_reason: (status == RefundStatus::Failed).then(|| "closed card".to_owned()),
    };
    // Eight copies of the provider's "failed" at once: one applies.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (f, result) = (f.clone(), result(RefundStatus::Failed));
            tokio::spawn(async move {
                f.payments
                    .apply_refund_result("sandbox", &format!("n{i}"), result)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            NotificationOutcome::Recorded(outcome) => outcomes.push(outcome),
            other => panic!("{other:?}"),
        }
    }
    let applied = outcomes
        .iter()
        .filter(|o| **o == CallbackOutcome::Applied)
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, CallbackOutcome::Applied | CallbackOutcome::Duplicate))
    );
    let settled = f.payments.get(&id).await.unwrap().unwrap().refunds[&refund_id].clone();
    assert_eq!(settled.refund_status, RefundStatus::Failed);
    assert_eq!(settled.failure_reason.as_deref(), Some("closed card"));
    assert!(settled.settled_at.is_some());

    // A different result later is only recorded; the refund stays failed.
    assert!(matches!(
        f.payments
            .apply_refund_result("sandbox", "n9", result(RefundStatus::Succeeded))
            .await
            .unwrap(),
        NotificationOutcome::Recorded(CallbackOutcome::Conflicting)
    ));
    assert_eq!(
        f.payments.get(&id).await.unwrap().unwrap().refunds[&refund_id],
        settled
    );
    let audit = f.audit_outcomes(&id).await;
    let count = |name: &str| audit.iter().filter(|o| *o == name).count();
    assert_eq!(count("REFUND_APPLIED"), 1, "{audit:?}");
    assert_eq!(count("REFUND_DUPLICATE"), 7, "{audit:?}");
    assert_eq!(count("REFUND_CONFLICTING_RESULT"), 1, "{audit:?}");

    // Another provider's word, a refund we never asked for, a payment that
    // does not exist: no effect.
    assert!(matches!(
        f.payments
            .apply_refund_result("stripe", "n10", result(RefundStatus::Succeeded))
            .await
            .unwrap(),
        NotificationOutcome::UnknownPayment(_)
    ));
    let mut foreign = result(RefundStatus::Succeeded);
    foreign.refund_id = "made-in-the-dashboard".into();
    assert!(matches!(
        f.payments
            .apply_refund_result("sandbox", "n11", foreign)
            .await
            .unwrap(),
        NotificationOutcome::Ignored
    ));
    assert_eq!(f.audit_outcomes(&id).await.len(), audit.len());
}
