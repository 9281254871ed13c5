//! Orders and inventory locking, in-process against official DynamoDB Local:
//! the handlers with real API Gateway v2 events, the production data layer,
//! real transactions and conditions, and many concurrent clients.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use adapters::orders::{Orders, Transition};
use adapters::ratelimit::RateLimit;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::orders::{OrderStatus, OrderTransition};
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;

const WINDOW: Duration = Duration::from_secs(900);

struct Fixture {
    db: TestDb,
    orders: Orders,
    payments: adapters::payments::Payments,
}

async fn fixture() -> Arc<Fixture> {
    let db = TestDb::new().await;
    let orders = Orders::new(db.client.clone(), db.tables.clone());
    let payments = adapters::payments::Payments::new(db.client.clone(), db.tables.clone());
    Arc::new(Fixture {
        db,
        orders,
        payments,
    })
}

fn respond(result: http_edge::ApiResult) -> (u16, Value) {
    parts(&http_edge::http::into_response(result))
}

impl Fixture {
    async fn product(&self, id: &str, price: i64, stock: i64) {
        self.db.add_product(id, price, stock).await;
    }

    /// (stock, reserved, sold) of a product.
    async fn counters(&self, id: &str) -> (i64, i64, i64) {
        let p = self.db.product(id).await;
        (p.stock, p.reserved, p.sold)
    }

    async fn create(&self, user: &str, body: Value) -> (u16, Value) {
        self.create_with(ApiRequest::post("/orders").as_user(user).json(body), WINDOW)
            .await
    }

    /// An order whose payment window is already over (due for expiry).
    async fn create_due(&self, user: &str, body: Value) -> (u16, Value) {
        self.create_with(
            ApiRequest::post("/orders").as_user(user).json(body),
            Duration::ZERO,
        )
        .await
    }

    async fn create_with(&self, req: ApiRequest, window: Duration) -> (u16, Value) {
        respond(create_order::handle(&self.orders, window, req.build()).await)
    }

    async fn get(&self, user: &str, order_id: &str) -> (u16, Value) {
        let req = ApiRequest::get("/orders/{orderId}")
            .path_param("orderId", order_id)
            .as_user(user);
        respond(get_order_info::handle(&self.orders, req.build()).await)
    }

    async fn cancel(&self, user: &str, order_id: &str) -> (u16, Value) {
        let req = ApiRequest::post("/orders/{orderId}/cancel")
            .path_param("orderId", order_id)
            .as_user(user);
        let payments =
            adapters::payments::Payments::new(self.db.client.clone(), self.db.tables.clone());
        let provider =
            adapters::payments::sandbox::SandboxProvider::new("s", "https://sandbox.test");
        respond(cancel_order::handle(&self.orders, &payments, &provider, req.build()).await)
    }

    async fn list(&self, user: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut req = ApiRequest::get("/orders").as_user(user);
        for (k, v) in query {
            req = req.query(k, v);
        }
        respond(list_orders::handle(&self.orders, req.build()).await)
    }

    /// The outbox records of one type that mention `order_id`.
    async fn events_for(&self, order_id: &str, event_type: &str) -> Vec<Value> {
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
            .filter_map(|item| match item.get("envelope") {
                Some(AttributeValue::S(s)) => serde_json::from_str::<Value>(s).ok(),
                _ => None,
            })
            .filter(|e| e["type"] == event_type && e["data"]["orderId"] == order_id)
            .collect()
    }

    async fn set_status(&self, order_id: &str, status: OrderStatus) {
        self.db
            .client
            .update_item()
            .table_name(&self.db.tables.orders)
            .key("orderId", AttributeValue::S(order_id.into()))
            .update_expression("SET orderStatus = :s")
            .expression_attribute_values(":s", AttributeValue::S(status.as_str().into()))
            .send()
            .await
            .unwrap();
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

#[tokio::test]
async fn an_order_reserves_stock_at_catalog_prices() {
    let f = fixture().await;
    f.product("tea", 1999, 10).await;
    let req = ApiRequest::post("/orders")
        .as_user("u1")
        .header("x-correlation-id", "corr-42")
        .json(json!({"productId": "tea", "quantity": 3}));
    let response =
        http_edge::http::into_response(create_order::handle(&f.orders, WINDOW, req.build()).await);
    let (status, order) = parts(&response);
    assert_eq!(status, 201, "{order}");
    let order_id = order["orderId"].as_str().unwrap();
    assert_eq!(
        response.headers()["location"],
        format!("/orders/{order_id}").as_str()
    );
    assert_eq!(order["userId"], "u1");
    assert_eq!(order["orderStatus"], "PENDING_PAYMENT");
    assert_eq!(order["orderAmount"], 5997);
    assert_eq!(order["currency"], "CNY");
    assert_eq!(
        order["items"],
        json!([{"productId": "tea", "name": "tea name", "category": "test", "quantity": 3, "unitPrice": 1999, "lineAmount": 5997}])
    );
    let created = time::OffsetDateTime::parse(
        order["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        order["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - created, time::Duration::minutes(15));
    assert_eq!(f.counters("tea").await, (7, 3, 0));

    let events = f.events_for(order_id, "OrderCreated").await;
    assert_eq!(events.len(), 1, "exactly one outbox event");
    assert_eq!(events[0]["correlationId"], "corr-42");
    assert_eq!(events[0]["data"]["orderAmount"], 5997);

    assert_eq!(f.get("u1", order_id).await, (200, order));
}

#[tokio::test]
async fn all_lines_lock_or_none_do() {
    let f = fixture().await;
    f.product("a", 100, 5).await;
    f.product("b", 200, 1).await;
    let (status, body) = f.create("u1", json!({"items": [{"productId": "a", "quantity": 2}, {"productId": "b", "quantity": 3}]})).await;
    assert_eq!((status, code(&body)), (409, "INSUFFICIENT_STOCK"), "{body}");
    assert_eq!(body["error"]["productId"], "b");
    assert_eq!(body["error"]["available"], 1);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("b (requested 3, available 1)")
    );
    assert_eq!(
        f.counters("a").await,
        (5, 0, 0),
        "the first line was not locked"
    );
    assert_eq!(f.counters("b").await, (1, 0, 0));
    let (_, list) = f.list("u1", &[]).await;
    assert_eq!(list["items"], json!([]), "no order was written");

    let (status, order) = f.create("u1", json!({"items": [{"productId": "a", "quantity": 2}, {"productId": "b", "quantity": 1}]})).await;
    assert_eq!(status, 201);
    assert_eq!(order["orderAmount"], 400);
    assert_eq!(
        (f.counters("a").await, f.counters("b").await),
        ((3, 2, 0), (0, 1, 0))
    );
}

#[tokio::test]
async fn unknown_products_and_bad_bodies_change_nothing() {
    let f = fixture().await;
    f.product("a", 100, 5).await;
    let (status, body) = f.create("u1", json!({"items": [{"productId": "a", "quantity": 1}, {"productId": "ghost", "quantity": 1}]})).await;
    assert_eq!((status, code(&body)), (404, "PRODUCT_NOT_FOUND"));
    assert_eq!(body["error"]["productId"], "ghost");
    for (body, field) in [
        (
            json!({"productId": "a", "quantity": 0}),
            "items[0].quantity",
        ),
        (
            json!({"productId": "a", "quantity": 1, "unitPrice": 1}),
            "unitPrice",
        ),
        (
            json!({"items": [{"productId": "a", "quantity": 1, "price": 1}]}),
            "price",
        ),
        (json!({"items": "a"}), "items"),
    ] {
        let (status, answer) = f.create("u1", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{body} -> {answer}"
        );
    }
    assert_eq!(f.counters("a").await, (5, 0, 0));
}

#[tokio::test]
async fn user_id_in_the_body_must_be_the_caller() {
    let f = fixture().await;
    f.product("a", 100, 5).await;
    let (status, body) = f
        .create(
            "u1",
            json!({"productId": "a", "quantity": 1, "userId": "u2"}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"));
    assert_eq!(f.counters("a").await, (5, 0, 0));
    let (status, order) = f
        .create(
            "u1",
            json!({"productId": "a", "quantity": 1, "userId": "u1"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(order["userId"], "u1");
    let anonymous = ApiRequest::post("/orders").json(json!({"productId": "a", "quantity": 1}));
    assert_eq!(f.create_with(anonymous, WINDOW).await.0, 401);
}

#[tokio::test]
async fn idempotency_key_replays_and_locks_once() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    let with_key = |user: &str, key: &str, body: Value| {
        ApiRequest::post("/orders")
            .as_user(user)
            .header("Idempotency-Key", key)
            .json(body)
    };

    let (s1, first) = f
        .create_with(
            with_key("u1", "k-1", json!({"productId": "a", "quantity": 2})),
            WINDOW,
        )
        .await;
    assert_eq!(s1, 201);
    // The same request (in the other body form) returns the original.
    let (s2, again) = f
        .create_with(
            with_key(
                "u1",
                "k-1",
                json!({"items": [{"productId": "a", "quantity": 2}]}),
            ),
            WINDOW,
        )
        .await;
    assert_eq!((s2, &again), (201, &first));
    assert_eq!(f.counters("a").await, (8, 2, 0), "stock locked once");

    let (s3, reused) = f
        .create_with(
            with_key("u1", "k-1", json!({"productId": "a", "quantity": 3})),
            WINDOW,
        )
        .await;
    assert_eq!((s3, code(&reused)), (409, "IDEMPOTENCY_KEY_REUSED"));
    // Keys are per user: another user's identical key is a new order.
    let (s4, other) = f
        .create_with(
            with_key("u2", "k-1", json!({"productId": "a", "quantity": 2})),
            WINDOW,
        )
        .await;
    assert_eq!(s4, 201);
    assert_ne!(other["orderId"], first["orderId"]);
    assert_eq!(f.counters("a").await, (6, 4, 0));

    let (s5, bad) = f
        .create_with(
            with_key("u1", "has space", json!({"productId": "a", "quantity": 1})),
            WINDOW,
        )
        .await;
    assert_eq!(
        (s5, bad["error"]["field"].as_str()),
        (400, Some("Idempotency-Key"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_create_one_order() {
    let f = fixture().await;
    f.product("a", 100, 100).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                let req = ApiRequest::post("/orders")
                    .as_user("u1")
                    .header("Idempotency-Key", "same")
                    .json(json!({"productId": "a", "quantity": 5}));
                f.create_with(req, WINDOW).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert(body["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every retry got the same order");
    assert_eq!(f.counters("a").await, (95, 5, 0));
}

#[tokio::test]
async fn orders_are_private_to_their_owner() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    let (_, order) = f
        .create("owner", json!({"productId": "a", "quantity": 1}))
        .await;
    let id = order["orderId"].as_str().unwrap();
    let (status, body) = f.get("intruder", id).await;
    assert_eq!((status, code(&body)), (404, "ORDER_NOT_FOUND"));
    let (status, _) = f.cancel("intruder", id).await;
    assert_eq!(status, 404);
    assert_eq!(f.get("owner", id).await.1["orderStatus"], "PENDING_PAYMENT");
    let (_, list) = f.list("intruder", &[]).await;
    assert_eq!(list["items"], json!([]));
    for bad in ["nope", "has-dash", &"x".repeat(65)] {
        assert_eq!(f.get("owner", bad).await.0, 404, "{bad}");
    }
}

#[tokio::test]
async fn listing_is_newest_first_and_paginated() {
    let f = fixture().await;
    f.product("a", 100, 100).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        let (_, order) = f
            .create("lister", json!({"productId": "a", "quantity": 1}))
            .await;
        created.push(order["orderId"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    f.create("someone-else", json!({"productId": "a", "quantity": 1}))
        .await;
    let (status, page1) = f.list("lister", &[("limit", "2")]).await;
    assert_eq!(status, 200);
    let token = page1["nextToken"].as_str().unwrap().to_owned();
    let (_, page2) = f
        .list("lister", &[("limit", "2"), ("nextToken", &token)])
        .await;
    let (_, rest) = f
        .list(
            "lister",
            &[
                ("limit", "10"),
                ("nextToken", page2["nextToken"].as_str().unwrap()),
            ],
        )
        .await;
    let listed: Vec<String> = [&page1, &page2, &rest]
        .iter()
        .flat_map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["orderId"].as_str().unwrap().to_owned())
        })
        .collect();
    created.reverse();
    assert_eq!(listed, created, "all of the caller's orders, newest first");

    // A token is bound to the user it was issued to.
    let (status, body) = f.list("someone-else", &[("nextToken", &token)]).await;
    assert_eq!((status, code(&body)), (400, "INVALID_NEXT_TOKEN"));
}

#[tokio::test]
async fn cancel_releases_stock_once_and_is_repeatable() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    let (_, order) = f
        .create("u1", json!({"productId": "a", "quantity": 4}))
        .await;
    let id = order["orderId"].as_str().unwrap();
    assert_eq!(f.counters("a").await, (6, 4, 0));

    let (status, cancelled) = f.cancel("u1", id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["orderStatus"], "CANCELLED");
    assert_eq!(f.counters("a").await, (10, 0, 0));
    assert_eq!(f.events_for(id, "OrderCancelled").await.len(), 1);

    let (status, again) = f.cancel("u1", id).await;
    assert_eq!(
        (status, again["orderStatus"].as_str()),
        (200, Some("CANCELLED"))
    );
    assert_eq!(f.counters("a").await, (10, 0, 0), "released once");
    assert_eq!(f.events_for(id, "OrderCancelled").await.len(), 1);
}

#[tokio::test]
async fn paid_expired_and_refunded_orders_cannot_be_cancelled() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    for status in [
        OrderStatus::Paid,
        OrderStatus::Expired,
        OrderStatus::Refunded,
    ] {
        let (_, order) = f
            .create("u1", json!({"productId": "a", "quantity": 1}))
            .await;
        let id = order["orderId"].as_str().unwrap();
        f.set_status(id, status).await;
        let (code_, body) = f.cancel("u1", id).await;
        assert_eq!(
            (code_, code(&body)),
            (409, "ORDER_NOT_CANCELLABLE"),
            "{status:?}"
        );
        assert_eq!(body["error"]["orderStatus"], status.as_str());
    }
    // PAYMENT_FAILED still holds stock and can be cancelled.
    let (_, order) = f
        .create("u1", json!({"productId": "a", "quantity": 1}))
        .await;
    let id = order["orderId"].as_str().unwrap();
    f.set_status(id, OrderStatus::PaymentFailed).await;
    assert_eq!(f.cancel("u1", id).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_releases_due_orders_once_even_with_concurrent_sweeps() {
    let f = fixture().await;
    f.product("a", 100, 20).await;
    let mut due = Vec::new();
    for _ in 0..6 {
        let (status, order) = f
            .create_due("u1", json!({"productId": "a", "quantity": 2}))
            .await;
        assert_eq!(status, 201);
        due.push(order["orderId"].as_str().unwrap().to_owned());
    }
    let (_, not_due) = f
        .create("u1", json!({"productId": "a", "quantity": 1}))
        .await;
    assert_eq!(f.counters("a").await, (7, 13, 0));
    tokio::time::sleep(Duration::from_millis(5)).await;

    let sweeps: Vec<_> = (0..3)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                expire_orders::sweep(&f.orders, &f.payments, &format!("run-{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut expired = 0;
    for sweep in sweeps {
        expired += sweep.await.unwrap().expired;
    }
    assert_eq!(expired, 6, "each due order expired by exactly one sweep");
    assert_eq!(f.counters("a").await, (19, 1, 0));
    for id in &due {
        assert_eq!(f.get("u1", id).await.1["orderStatus"], "EXPIRED");
        assert_eq!(f.events_for(id, "OrderExpired").await.len(), 1);
    }
    assert_eq!(
        f.get("u1", not_due["orderId"].as_str().unwrap()).await.1["orderStatus"],
        "PENDING_PAYMENT"
    );
    let report = expire_orders::sweep(&f.orders, &f.payments, "again")
        .await
        .unwrap();
    assert_eq!(
        report,
        expire_orders::SweepReport::default(),
        "nothing left to do"
    );
}

#[tokio::test]
async fn an_expiry_sweep_about_to_time_out_leaves_the_backlog_to_the_next_run() {
    let f = fixture().await;
    f.product("a", 100, 20).await;
    for _ in 0..3 {
        let (status, _) = f
            .create_due("u1", json!({"productId": "a", "quantity": 2}))
            .await;
        assert_eq!(status, 201);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let sweep_with = |time_left: Duration, run: &'static str| {
        let deadline = tokio::time::Instant::now() + time_left;
        adapters::runtime::DEADLINE
            .scope(deadline, expire_orders::sweep(&f.orders, &f.payments, run))
    };

    // Less left of the invocation than one more order may take: nothing is
    // tried, nothing is half done.
    let late = sweep_with(adapters::runtime::SWEEP_MARGIN / 2, "late")
        .await
        .unwrap();
    assert_eq!(
        late,
        expire_orders::SweepReport {
            left_for_next_run: 3,
            ..Default::default()
        }
    );
    assert_eq!(f.counters("a").await, (14, 6, 0));

    // The next run, with time to spare, takes them all.
    let next = sweep_with(adapters::runtime::SWEEP_MARGIN * 2, "next")
        .await
        .unwrap();
    assert_eq!(
        next,
        expire_orders::SweepReport {
            expired: 3,
            ..Default::default()
        }
    );
    assert_eq!(f.counters("a").await, (20, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_expiry_racing_release_stock_once() {
    let f = fixture().await;
    f.product("a", 100, 1000).await;
    for round in 0..20 {
        let (_, order) = f
            .create_due("u1", json!({"productId": "a", "quantity": 3}))
            .await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        let stored = f.orders.get(&id).await.unwrap().unwrap();
        let (cancel, expire) = {
            let (f1, f2, o1, o2) = (f.clone(), f.clone(), stored.clone(), stored);
            tokio::join!(
                tokio::spawn(async move {
                    f1.orders
                        .apply_transition(&o1, OrderTransition::Cancel, "c")
                        .await
                        .unwrap()
                }),
                tokio::spawn(async move {
                    f2.orders
                        .apply_transition(&o2, OrderTransition::Expire, "e")
                        .await
                        .unwrap()
                }),
            )
        };
        let winners = [cancel.unwrap(), expire.unwrap()]
            .iter()
            .filter(|r| matches!(r, Transition::Applied(_)))
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of cancel and expiry wins"
        );
    }
    assert_eq!(
        f.counters("a").await,
        (1000, 0, 0),
        "every reservation released exactly once"
    );
}

/// Many clients racing for little stock: exactly the stock is sold, on one
/// stock item and spread over 16 (issue 25), and no shard is ever short.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn flash_sale_never_oversells() {
    const STOCK: i64 = 50;
    const CLIENTS: usize = 300;
    let f = fixture().await;
    for (round, shards) in [1, 16, 1, 16].into_iter().enumerate() {
        let product = format!("kettle-{round}");
        f.product(&product, 9900, STOCK).await;
        f.db.shard_product(&product, STOCK, shards).await;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (f, product) = (f.clone(), product.clone());
                tokio::spawn(async move {
                    f.create(
                        &format!("buyer-{i}"),
                        json!({"productId": product, "quantity": 1}),
                    )
                    .await
                })
            })
            .collect();
        let (mut sold, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                (201, _) => sold += 1,
                (409, body) => {
                    assert_eq!(code(&body), "INSUFFICIENT_STOCK");
                    refused += 1;
                }
                (status, body) => panic!("round {round}: unexpected {status} {body}"),
            }
        }
        println!(
            "flash sale round {round}: {CLIENTS} clients, stock {STOCK} on {shards} shards: {sold} sold, {refused} refused"
        );
        assert_eq!(
            (sold, refused),
            (STOCK, CLIENTS as i64 - STOCK),
            "round {round}: every unit sold, none twice"
        );
        assert_eq!(f.counters(&product).await, (0, STOCK, 0), "round {round}");
        let per_shard = f.db.shard_counters(&product).await;
        assert_eq!(per_shard.len(), shards as usize);
        assert!(
            per_shard
                .iter()
                .all(|&(stock, reserved, sold)| stock == 0 && reserved >= 0 && sold == 0),
            "round {round}: {per_shard:?}"
        );
    }
}

/// Issue 25: a line no single shard can hold is split across shards, so
/// every unit sells: buyers of 3 units each leave fewer than 3 behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sharded_stock_sells_every_unit_a_line_can_take() {
    const STOCK: i64 = 50;
    let f = fixture().await;
    f.product("triple", 100, STOCK).await;
    f.db.shard_product("triple", STOCK, 16).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                f.create(
                    &format!("buyer-{i}"),
                    json!({"productId": "triple", "quantity": 3}),
                )
                .await
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        match task.await.unwrap() {
            (201, _) => placed += 1,
            (409, body) => assert_eq!(code(&body), "INSUFFICIENT_STOCK", "{body}"),
            (status, body) => panic!("unexpected {status} {body}"),
        }
    }
    let (stock, reserved, sold) = f.counters("triple").await;
    println!("{placed} orders of 3 from {STOCK} units on 16 shards; {stock} left");
    assert_eq!((reserved, sold), (3 * placed, 0));
    assert_eq!(stock, STOCK - 3 * placed, "units conserved");
    assert!(
        stock < 3,
        "a sold-out answered while {stock} units remained"
    );
}

/// Issue 25: an order records the shards it took from, and cancelling,
/// paying and refunding move the units on exactly those shards.
#[tokio::test]
async fn sharded_units_go_back_to_the_shards_they_came_from() {
    let f = fixture().await;
    f.product("spread", 100, 8).await;
    f.db.shard_product("spread", 8, 4).await;
    assert_eq!(f.db.shard_counters("spread").await, vec![(2, 0, 0); 4]);

    // No shard holds 5: the line is split over three of them.
    let (status, order) = f
        .create("u1", json!({"productId": "spread", "quantity": 5}))
        .await;
    assert_eq!(status, 201, "{order}");
    assert!(
        order.get("stockTaken").is_none(),
        "shards are not the buyer's business"
    );
    let stored = f
        .orders
        .get(order["orderId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let parts = &stored.stock_taken["spread"];
    assert_eq!(parts.iter().map(|p| p.quantity).sum::<i64>(), 5);
    assert_eq!(parts.len(), 3, "{parts:?}");
    let shards = f.db.shard_counters("spread").await;
    assert_eq!(shards.iter().map(|s| s.1).sum::<i64>(), 5);
    for part in parts {
        assert_eq!(shards[part.shard as usize].1, part.quantity, "{shards:?}");
    }
    assert!(
        shards
            .iter()
            .all(|&(stock, reserved, _)| stock + reserved == 2)
    );

    let (status, _) = f.cancel("u1", &stored.order_id).await;
    assert_eq!(status, 200);
    assert_eq!(f.db.shard_counters("spread").await, vec![(2, 0, 0); 4]);

    // Paid, then refunded whole: sold on its shards, back in stock there.
    let paid = f
        .paid_order_of("u2", json!({"productId": "spread", "quantity": 3}))
        .await;
    let shards = f.db.shard_counters("spread").await;
    assert_eq!(shards.iter().map(|s| s.2).sum::<i64>(), 3, "{shards:?}");
    assert!(
        shards
            .iter()
            .all(|&(stock, reserved, sold)| stock + sold == 2 && reserved == 0)
    );
    assert!(matches!(
        f.orders
            .apply_transition(&paid, OrderTransition::Refund, "c")
            .await
            .unwrap(),
        Transition::Applied(_)
    ));
    assert_eq!(f.db.shard_counters("spread").await, vec![(2, 0, 0); 4]);
}

/// Issue 25: an admin spreads the stock evenly in one write, the catalog
/// answers the sum, shards never shrink, and a price change reaches every
/// shard (a reservation priced before it is priced again).
#[tokio::test]
async fn admins_spread_stock_over_shards_and_the_catalog_sums_them() {
    let f = fixture().await;
    f.product("even", 100, 10).await;
    let (_, order) = f
        .create("u1", json!({"productId": "even", "quantity": 4}))
        .await;
    f.db.shard_product("even", 10, 3).await;
    // The reservation of 4 stays on shard 0; the new stock is spread.
    assert_eq!(
        f.db.shard_counters("even").await,
        vec![(4, 4, 0), (3, 0, 0), (3, 0, 0)]
    );
    assert_eq!(f.counters("even").await, (10, 4, 0));
    let catalog = adapters::catalog::Catalog::new(f.db.client.clone(), &f.db.tables);
    let err = catalog
        .set_stock("even", 10, Some(2), "2026-11-22T00:00:02.000Z")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("can only grow"), "{err}");
    // A PUT without stockShards keeps the shards and spreads its stock.
    let draft = domain::catalog::ProductDraft {
        product_id: None,
        name: "even".into(),
        description: String::new(),
        category: "test".into(),
        price: 250,
        currency: "CNY".into(),
        stock: 7,
        stock_shards: None,
    };
    let (product, created) = catalog
        .put("even", &draft, "2026-11-22T00:00:03.000Z")
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (product.stock, product.reserved, product.stock_shards),
        (7, 4, 3)
    );
    let view = serde_json::to_value(product.clone().view(true)).unwrap();
    assert_eq!(view["stockShards"], 3);
    assert!(
        serde_json::to_value(product.view(false))
            .unwrap()
            .get("stockShards")
            .is_none()
    );
    // Orders now pay the new price, whichever shard they take from.
    for i in 0..5 {
        let (status, body) = f
            .create(
                &format!("p{i}"),
                json!({"productId": "even", "quantity": 1}),
            )
            .await;
        assert_eq!(
            (status, body["orderAmount"].as_i64()),
            (201, Some(250)),
            "{body}"
        );
    }
    assert_eq!(f.counters("even").await, (2, 9, 0));
    f.cancel("u1", order["orderId"].as_str().unwrap()).await;
    assert_eq!(f.counters("even").await, (6, 5, 0));
}

/// Multi-line orders taking the same products in opposite orders neither
/// deadlock nor lock partially.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn opposite_multi_line_orders_lock_all_or_nothing() {
    const STOCK: i64 = 30;
    let f = fixture().await;
    f.product("left", 100, STOCK).await;
    f.product("right", 100, STOCK).await;
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let f = f.clone();
            let lines = if i % 2 == 0 {
                json!([{"productId": "left", "quantity": 1}, {"productId": "right", "quantity": 1}])
            } else {
                json!([{"productId": "right", "quantity": 1}, {"productId": "left", "quantity": 1}])
            };
            tokio::spawn(async move { f.create(&format!("u{i}"), json!({"items": lines})).await })
        })
        .collect();
    let mut sold = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => sold += 1,
            409 => assert_eq!(code(&body), "INSUFFICIENT_STOCK"),
            _ => panic!("unexpected {status} {body}"),
        }
    }
    assert_eq!(sold, STOCK);
    assert_eq!(f.counters("left").await, (0, STOCK, 0));
    assert_eq!(f.counters("right").await, (0, STOCK, 0));
}

/// Cancel, expiry and a payment racing for the same order: exactly one
/// wins, and `stock + reserved + sold` is conserved whichever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_expiry_and_payment_racing_settle_each_order_once() {
    const INITIAL: i64 = 1000;
    let f = fixture().await;
    f.product("a", 100, INITIAL).await;
    let mut paid = 0;
    for round in 0..20 {
        let (_, order) = f
            .create_due("u1", json!({"productId": "a", "quantity": 3}))
            .await;
        let stored = f
            .orders
            .get(order["orderId"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let racers: Vec<_> = [
            OrderTransition::Cancel,
            OrderTransition::Expire,
            OrderTransition::PaymentSucceeded,
        ]
        .into_iter()
        .map(|t| {
            let (f, o) = (f.clone(), stored.clone());
            tokio::spawn(
                async move { (t, f.orders.apply_transition(&o, t, "race").await.unwrap()) },
            )
        })
        .collect();
        let mut winners = Vec::new();
        for racer in racers {
            let (t, outcome) = racer.await.unwrap();
            if matches!(outcome, Transition::Applied(_)) {
                winners.push(t);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        if winners[0] == OrderTransition::PaymentSucceeded {
            paid += 1;
        }
        let (stock, reserved, sold) = f.counters("a").await;
        assert_eq!(
            (stock + reserved + sold, reserved),
            (INITIAL, 0),
            "round {round}"
        );
        assert_eq!(sold, 3 * paid, "round {round}");
    }
}

#[tokio::test]
async fn payment_sells_and_refund_restocks() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    let (_, order) = f
        .create("u1", json!({"productId": "a", "quantity": 4}))
        .await;
    let stored = f
        .orders
        .get(order["orderId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();

    let failed = match f
        .orders
        .apply_transition(&stored, OrderTransition::PaymentFailed, "c")
        .await
        .unwrap()
    {
        Transition::Applied(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(failed.order_status, OrderStatus::PaymentFailed);
    assert_eq!(
        f.counters("a").await,
        (6, 4, 0),
        "a failed payment keeps the reservation"
    );

    let paid = match f
        .orders
        .apply_transition(&failed, OrderTransition::PaymentSucceeded, "c")
        .await
        .unwrap()
    {
        Transition::Applied(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(f.counters("a").await, (6, 0, 4));
    assert!(matches!(
        f.orders
            .apply_transition(&paid, OrderTransition::Expire, "c")
            .await
            .unwrap(),
        Transition::LostRace(Some(OrderStatus::Paid))
    ));
    assert!(matches!(
        f.orders
            .apply_transition(&paid, OrderTransition::Refund, "c")
            .await
            .unwrap(),
        Transition::Applied(_)
    ));
    assert_eq!(f.counters("a").await, (10, 0, 0));
    let id = &paid.order_id;
    for event in [
        "OrderCreated",
        "OrderPaymentFailed",
        "OrderPaid",
        "OrderRefunded",
    ] {
        assert_eq!(f.events_for(id, event).await.len(), 1, "{event}");
    }
    assert!(f.events_for(id, "OrderExpired").await.is_empty());
}

/// createOrder needs exactly two DynamoDB round trips: the catalog read and
/// the transaction, with or without an Idempotency-Key, and so does a replay.
#[tokio::test]
async fn create_order_costs_two_round_trips() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    f.product("b", 100, 10).await;
    let (client, round_trips) = system_tests::dynamo::counted_client().await;
    // With the per-user limit on: its token rides in the same transaction.
    let orders = Orders::new(client, f.db.tables.clone()).with_rate_limit(RateLimit::new(
        &f.db.tables.rate_limits,
        "createOrder",
        30,
        10,
    ));
    let body =
        json!({"items": [{"productId": "a", "quantity": 1}, {"productId": "b", "quantity": 1}]});
    for (label, req) in [
        (
            "plain",
            ApiRequest::post("/orders").as_user("u1").json(body.clone()),
        ),
        (
            "with key",
            ApiRequest::post("/orders")
                .as_user("u2")
                .header("Idempotency-Key", "rt")
                .json(body.clone()),
        ),
        (
            "replay",
            ApiRequest::post("/orders")
                .as_user("u2")
                .header("Idempotency-Key", "rt")
                .json(body.clone()),
        ),
    ] {
        round_trips.reset();
        let (status, _) = respond(create_order::handle(&orders, WINDOW, req.build()).await);
        assert_eq!(status, 201, "{label}");
        assert_eq!(round_trips.count(), 2, "{label}");
    }
    round_trips.reset();
    let (status, _) = f
        .create("u1", json!({"productId": "a", "quantity": 1}))
        .await;
    assert_eq!(
        (status, round_trips.count()),
        (201, 0),
        "the fixture's own client is not counted"
    );
}

/// Issue 25: an order of a sharded product costs the same two round trips
/// once the container knows the product is sharded: two random shards ride
/// in the products' BatchGetItem. The first order reads every shard (one
/// more), and so does an order after the shard count grew.
#[tokio::test]
async fn a_sharded_order_reads_two_shards_with_the_products() {
    let f = fixture().await;
    f.product("hot", 100, 1000).await;
    f.product("cold", 100, 10).await;
    f.db.shard_product("hot", 1000, 16).await;
    let (client, round_trips) = system_tests::dynamo::counted_client().await;
    let orders = Orders::new(client, f.db.tables.clone());
    let body = json!({"items": [{"productId": "hot", "quantity": 1}, {"productId": "cold", "quantity": 1}]});
    let order = |user: &str| {
        ApiRequest::post("/orders")
            .as_user(user)
            .json(body.clone())
            .build()
    };
    for (user, trips) in [("u1", 3), ("u2", 2), ("u3", 2)] {
        round_trips.reset();
        let (status, answer) = respond(create_order::handle(&orders, WINDOW, order(user)).await);
        assert_eq!(status, 201, "{answer}");
        assert_eq!(
            round_trips.count(),
            trips,
            "{user}: {}",
            round_trips.operations()
        );
    }
    f.db.shard_product("hot", 1000, 32).await;
    round_trips.reset();
    let (status, _) = respond(create_order::handle(&orders, WINDOW, order("u4")).await);
    assert_eq!(
        (status, round_trips.count()),
        (201, 3),
        "{}",
        round_trips.operations()
    );
    assert_eq!(f.counters("hot").await, (999, 4, 0));
}

/// One order a minute after a burst of `burst`.
fn limited_orders(f: &Fixture, burst: i64) -> Orders {
    Orders::new(f.db.client.clone(), f.db.tables.clone()).with_rate_limit(RateLimit::new(
        &f.db.tables.rate_limits,
        "createOrder",
        1,
        burst,
    ))
}

#[tokio::test]
async fn a_user_over_their_order_rate_gets_429_with_retry_after() {
    let f = fixture().await;
    f.product("rl", 100, 50).await;
    let orders = limited_orders(&f, 3);
    let order = |user: &str| {
        ApiRequest::post("/orders")
            .as_user(user)
            .json(json!({"productId": "rl", "quantity": 1}))
            .build()
    };
    for _ in 0..3 {
        let (status, body) = respond(create_order::handle(&orders, WINDOW, order("u1")).await);
        assert_eq!(status, 201, "{body}");
    }
    let response =
        http_edge::http::into_response(create_order::handle(&orders, WINDOW, order("u1")).await);
    let retry_after: u32 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, body) = parts(&response);
    assert_eq!((status, code(&body)), (429, "RATE_LIMITED"), "{body}");
    assert_eq!(
        f.counters("rl").await,
        (47, 3, 0),
        "the refused order reserved nothing"
    );
    let (status, _) = respond(create_order::handle(&orders, WINDOW, order("u2")).await);
    assert_eq!(status, 201, "another user has a bucket of their own");
}

#[tokio::test]
async fn racing_orders_of_one_user_never_exceed_the_burst() {
    let f = fixture().await;
    f.product("rl-race", 100, 100).await;
    let orders = Arc::new(limited_orders(&f, 5));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let orders = orders.clone();
        tasks.push(tokio::spawn(async move {
            let req = ApiRequest::post("/orders")
                .as_user("racer")
                .json(json!({"productId": "rl-race", "quantity": 1}))
                .build();
            respond(create_order::handle(&orders, WINDOW, req).await)
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().0);
    }
    let placed = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(placed, 5, "exactly the burst: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [201, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(f.counters("rl-race").await, (95, 5, 0));
}

impl Fixture {
    /// An order of one unit of `a`, paid by a stored SUCCEEDED sandbox
    /// payment (as the order-status consumer leaves it).
    async fn paid_order(&self, user: &str) -> domain::orders::Order {
        self.paid_order_of(user, json!({"productId": "a", "quantity": 1}))
            .await
    }

    /// An order of `body`, paid like [`Self::paid_order`].
    async fn paid_order_of(&self, user: &str, body: Value) -> domain::orders::Order {
        let (_, order) = self.create(user, body).await;
        let order = self
            .orders
            .get(order["orderId"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let now = domain::clock::now_rfc3339();
        let payment = domain::payments::Payment {
            payment_id: domain::ids::new_id(),
            order_id: order.order_id.clone(),
            user_id: user.into(),
            amount: order.order_amount,
            currency: order.currency.clone(),
            payment_method: domain::payments::PaymentMethod::Card,
            payment_status: domain::payments::PaymentStatus::Succeeded,
            payment_url: "https://sandbox.test/pay".into(),
            qr_code: None,
            created_at: now.clone(),
            updated_at: now,
            expires_at: order.expires_at.clone(),
            provider_transaction_id: Some("tx".into()),
            failure_reason: None,
            provider: "sandbox".into(),
            provider_reference: None,
            refunds: Default::default(),
        };
        self.db
            .client
            .put_item()
            .table_name(&self.db.tables.payments)
            .set_item(Some(serde_dynamo::to_item(&payment).unwrap()))
            .send()
            .await
            .unwrap();
        let context = adapters::orders::TransitionContext {
            payment_id: Some(payment.payment_id.clone()),
            ..Default::default()
        };
        match self
            .orders
            .apply_transition_with(&order, OrderTransition::PaymentSucceeded, "c", &context)
            .await
            .unwrap()
        {
            Transition::Applied(paid) => *paid,
            other => panic!("{other:?}"),
        }
    }

    async fn ship(&self, admin: bool, order_id: &str, body: Value) -> (u16, Value) {
        let req = ApiRequest::post("/orders/{orderId}/shipments").path_param("orderId", order_id);
        let req = if admin {
            req.as_admin("ops")
        } else {
            req.as_user("u1")
        };
        respond(ship_order::handle(&self.orders, req.json(body).build()).await)
    }

    async fn receive(&self, user: &str, order_id: &str) -> (u16, Value) {
        let req = ApiRequest::post("/orders/{orderId}/receipt")
            .path_param("orderId", order_id)
            .as_user(user);
        respond(confirm_receipt::handle(&self.orders, req.build()).await)
    }
}

#[tokio::test]
async fn only_a_paid_order_ships_and_only_its_buyer_confirms_receipt() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    let shipment = json!({"carrier": "顺丰速运", "trackingNumber": "SF1234567890"});
    let (_, unpaid) = f
        .create("u1", json!({"productId": "a", "quantity": 1}))
        .await;
    let unpaid = unpaid["orderId"].as_str().unwrap();
    let (status, body) = f.ship(true, unpaid, shipment.clone()).await;
    assert_eq!((status, code(&body)), (409, "ORDER_NOT_SHIPPABLE"));
    assert_eq!(body["error"]["orderStatus"], "PENDING_PAYMENT");

    let paid = f.paid_order("u1").await;
    let id = paid.order_id.as_str();
    // A shopper may not ship; bad bodies name their field; unknown orders 404.
    assert_eq!(f.ship(false, id, shipment.clone()).await.0, 403);
    for (body, field) in [
        (json!({"carrier": "", "trackingNumber": "SF1"}), "carrier"),
        (
            json!({"carrier": "SF", "trackingNumber": "SF 1"}),
            "trackingNumber",
        ),
        (json!({"carrier": "SF"}), "trackingNumber"),
        (
            json!({"carrier": "SF", "trackingNumber": "1", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, answer) = f.ship(true, id, body.clone()).await;
        assert_eq!(status, 400, "{body} {answer}");
        assert!(answer.to_string().contains(field), "{body} {answer}");
    }
    assert_eq!(
        f.ship(true, "01JDQ3Z8G6W9Y4XKQ2T7V5N1AB", shipment.clone())
            .await
            .0,
        404
    );
    // Receipt before shipping is 409.
    let (status, body) = f.receive("u1", id).await;
    assert_eq!((status, code(&body)), (409, "ORDER_NOT_SHIPPED"));

    let (status, shipped) = f.ship(true, id, shipment.clone()).await;
    assert_eq!(status, 201, "{shipped}");
    assert_eq!(shipped["orderStatus"], "SHIPPED");
    assert_eq!(shipped["shipment"]["trackingNumber"], "SF1234567890");
    // The same shipment again: 200, the same order; another one: 409.
    let (status, again) = f.ship(true, id, shipment.clone()).await;
    assert_eq!((status, &again["shipment"]), (200, &shipped["shipment"]));
    let other = json!({"carrier": "EMS", "trackingNumber": "E1"});
    let (status, body) = f.ship(true, id, other).await;
    assert_eq!((status, code(&body)), (409, "ORDER_NOT_SHIPPABLE"));
    // Shipped: no longer cancellable; the answer points at refund requests.
    let (status, body) = f.cancel("u1", id).await;
    assert_eq!((status, code(&body)), (409, "ORDER_NOT_CANCELLABLE"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refund-requests")
    );
    // Another shopper cannot see it, let alone confirm it.
    assert_eq!(f.receive("u2", id).await.0, 404);
    let (status, done) = f.receive("u1", id).await;
    assert_eq!((status, &done["orderStatus"]), (200, &json!("COMPLETED")));
    assert!(done["completedAt"].is_string());
    assert_eq!(f.receive("u1", id).await.0, 200, "confirming again is fine");
    // One unit sold (shipped and completed), one reserved by the unpaid order.
    assert_eq!(f.counters("a").await, (8, 1, 1), "shipping moves no stock");
    for event in ["OrderPaid", "OrderShipped", "OrderCompleted"] {
        assert_eq!(f.events_for(id, event).await.len(), 1, "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipt_racing_the_auto_confirm_sweep_completes_once() {
    let f = fixture().await;
    f.product("a", 100, 10).await;
    // Confirmed at the sweep's next run.
    let orders = Arc::new(
        f.orders
            .clone()
            .with_auto_confirm_after(time::Duration::ZERO),
    );
    let shipment = json!({"carrier": "SF Express", "trackingNumber": "SF1"});
    let mut ids = Vec::new();
    for _ in 0..4 {
        let paid = f.paid_order("u1").await;
        let req = ApiRequest::post("/orders/{orderId}/shipments")
            .path_param("orderId", &paid.order_id)
            .as_admin("ops")
            .json(shipment.clone());
        let (status, _) = respond(ship_order::handle(&orders, req.build()).await);
        assert_eq!(status, 201);
        ids.push(paid.order_id);
    }
    let mut tasks = Vec::new();
    for round in 0..3 {
        let orders = orders.clone();
        tasks.push(tokio::spawn(async move {
            confirm_receipts::sweep(&orders, &format!("run{round}"))
                .await
                .map(|r| r.completed)
                .unwrap()
        }));
        for id in ids.clone() {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let (status, body) = f.receive("u1", &id).await;
                assert_eq!((status, &body["orderStatus"]), (200, &json!("COMPLETED")));
                0
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for id in &ids {
        assert_eq!(f.events_for(id, "OrderCompleted").await.len(), 1, "{id}");
    }
    // Completed orders leave the sweep's index.
    assert!(
        orders
            .find_due_for_receipt(domain::clock::now())
            .await
            .unwrap()
            .iter()
            .all(|o| !ids.contains(&o.order_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_a_shipment_lets_exactly_one_win() {
    let f = fixture().await;
    f.product("a", 100, 50).await;
    let shipment = json!({"carrier": "SF Express", "trackingNumber": "SF2"});
    let mut races = Vec::new();
    for _ in 0..8 {
        let paid = f.paid_order("u1").await;
        let (f1, f2, id) = (f.clone(), f.clone(), paid.order_id.clone());
        let ship = {
            let (id, shipment) = (id.clone(), shipment.clone());
            tokio::spawn(async move { f1.ship(true, &id, shipment).await })
        };
        let cancel = tokio::spawn(async move { f2.cancel("u1", &id).await });
        races.push((paid.order_id, ship, cancel));
    }
    for (id, ship, cancel) in races {
        let (shipped, cancelled) = (ship.await.unwrap(), cancel.await.unwrap());
        match (shipped.0, cancelled.0) {
            (201, 409) => {
                assert_eq!(code(&cancelled.1), "ORDER_NOT_CANCELLABLE");
                assert_eq!(f.events_for(&id, "OrderShipped").await.len(), 1);
            }
            (409, 202) => {
                assert_eq!(code(&shipped.1), "ORDER_NOT_SHIPPABLE");
                assert!(f.events_for(&id, "OrderShipped").await.is_empty());
                let order = f.orders.get(&id).await.unwrap().unwrap();
                let payment = f
                    .payments
                    .get(order.paid_payment_id.as_deref().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    payment.payment_status,
                    domain::payments::PaymentStatus::Refunded
                );
            }
            other => panic!("{id}: both or neither won: {other:?} {shipped:?} {cancelled:?}"),
        }
    }
}

mod refund_requests {
    use super::*;
    use adapters::refund_requests::{Filed, Filing, RefundRequests};
    use domain::orders::LineRequest;
    use domain::refund_requests::{RefundRequestBody, RefundRequestError, RefundRequestStatus};

    fn requests(f: &Fixture) -> RefundRequests {
        RefundRequests::new(f.db.client.clone(), f.db.tables.clone())
    }

    /// `POST /orders/{orderId}/refund-requests` as `user`, with `key`.
    async fn ask(
        f: &Fixture,
        user: &str,
        order_id: &str,
        body: Value,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = ApiRequest::post("/orders/{orderId}/refund-requests")
            .path_param("orderId", order_id)
            .as_user(user)
            .json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        respond(request_refund::handle(&f.orders, &requests(f), req.build()).await)
    }

    /// `POST /admin/refund-requests/{id}/decision`, as an admin or not.
    async fn decide(f: &Fixture, admin: bool, id: &str, body: Value) -> (u16, Value) {
        let req = ApiRequest::post("/admin/refund-requests/{refundRequestId}/decision")
            .path_param("refundRequestId", id);
        let req = if admin {
            req.as_admin("ops")
        } else {
            req.as_user("u1")
        };
        respond(
            decide_refund_request::handle(
                &requests(f),
                &f.payments,
                &provider(),
                req.json(body).build(),
            )
            .await,
        )
    }

    async fn listed(f: &Fixture, user: &str, order_id: &str) -> (u16, Value) {
        let req = ApiRequest::get("/orders/{orderId}/refund-requests")
            .path_param("orderId", order_id)
            .as_user(user);
        respond(list_refund_requests::handle(&f.orders, &requests(f), req.build()).await)
    }

    async fn queue(f: &Fixture, admin: bool, status: Option<&str>) -> (u16, Value) {
        let mut req = ApiRequest::get("/admin/refund-requests");
        if let Some(status) = status {
            req = req.query("status", status);
        }
        let req = if admin {
            req.as_admin("ops")
        } else {
            req.as_user("u1")
        };
        respond(find_refund_requests::handle(&requests(f), req.build()).await)
    }

    #[tokio::test]
    async fn the_routes_name_what_is_wrong_and_replay_after_the_order_moved_on() {
        let f = fixture().await;
        f.product("a", 100, 10).await;
        f.product("b", 250, 10).await;
        let order = f
            .paid_order_of(
                "u1",
                json!({"items": [{"productId": "a", "quantity": 2}, {"productId": "b", "quantity": 1}]}),
            )
            .await;
        let id = order.order_id.as_str();
        let line = |product: &str, quantity: Value| json!({"items": [{"productId": product, "quantity": quantity}], "reason": "broken", "returnGoods": true});
        // Bad bodies name their field and change nothing.
        for (body, field) in [
            (line("a", json!(0)), "items[0].quantity"),
            (line("a", json!(-1)), "items[0].quantity"),
            (line("a", json!(3)), "items[0].quantity"),
            (line("zz", json!(1)), "items[0].productId"),
            (
                json!({"items": [], "reason": "x", "returnGoods": false}),
                "items",
            ),
            (
                json!({"items": [{"productId": "a", "quantity": 1}], "reason": " ", "returnGoods": false}),
                "reason",
            ),
        ] {
            let (status, answer) = ask(&f, "u1", id, body, None).await;
            assert_eq!((status, code(&answer)), (400, "INVALID_FIELD"), "{answer}");
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
        for body in [
            line("a", json!(1.5)),
            line("a", json!("1")),
            json!({"items": [{"productId": "a", "quantity": 1}], "reason": "x"}),
            json!({"items": [{"productId": "a", "quantity": 1}], "reason": "x", "returnGoods": true, "amount": 1}),
        ] {
            let (status, answer) = ask(&f, "u1", id, body.clone(), None).await;
            assert_eq!(status, 400, "{body} → {answer}");
        }
        // Another shopper's order is not there; an unpaid one takes none.
        let (status, answer) = ask(&f, "u2", id, line("a", json!(1)), None).await;
        assert_eq!((status, code(&answer)), (404, "ORDER_NOT_FOUND"));
        let (_, unpaid) = f
            .create("u1", json!({"productId": "a", "quantity": 1}))
            .await;
        let unpaid = unpaid["orderId"].as_str().unwrap();
        let (status, answer) = ask(&f, "u1", unpaid, line("a", json!(1)), None).await;
        assert_eq!(
            (status, code(&answer)),
            (409, "ORDER_NOT_REFUNDABLE"),
            "{answer}"
        );
        assert_eq!(answer["error"]["orderStatus"], "PENDING_PAYMENT");
        assert!(
            requests(&f)
                .list_for_order(id, 10, None)
                .await
                .unwrap()
                .0
                .is_empty()
        );

        // One key, one request: the same body again is the same answer;
        // another body with it is refused.
        let (status, first) = ask(&f, "u1", id, line("a", json!(2)), Some("k-1")).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(
            (first["requestStatus"].as_str(), first["amount"].as_i64()),
            (Some("REQUESTED"), Some(200))
        );
        let (status, again) = ask(&f, "u1", id, line("a", json!(2)), Some("k-1")).await;
        assert_eq!((status, &again), (201, &first));
        let (status, answer) = ask(&f, "u1", id, line("b", json!(1)), Some("k-1")).await;
        assert_eq!((status, code(&answer)), (409, "IDEMPOTENCY_KEY_REUSED"));
        // The line's units are all claimed now.
        let (status, answer) = ask(&f, "u1", id, line("a", json!(1)), None).await;
        assert_eq!(
            (status, code(&answer)),
            (409, "REFUND_QUANTITY_EXCEEDED"),
            "{answer}"
        );
        assert_eq!(
            (
                answer["error"]["field"].as_str(),
                answer["error"]["claimable"].as_i64()
            ),
            (Some("items[0].quantity"), Some(0))
        );

        // Deciding is the admin's; a rejection needs its reason.
        let rid = first["refundRequestId"].as_str().unwrap();
        let (status, answer) = decide(&f, false, rid, json!({"decision": "APPROVE"})).await;
        assert_eq!((status, code(&answer)), (403, "FORBIDDEN"));
        let (status, answer) = decide(&f, true, rid, json!({"decision": "REJECT"})).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some("reason"))
        );
        let (status, _) = decide(&f, true, rid, json!({"decision": "MAYBE"})).await;
        assert_eq!(status, 400);
        let (status, answer) =
            decide(&f, true, "01NOSUCHREQUEST", json!({"decision": "APPROVE"})).await;
        assert_eq!((status, code(&answer)), (404, "REFUND_REQUEST_NOT_FOUND"));
        let (status, approved) = decide(
            &f,
            true,
            rid,
            json!({"decision": "APPROVE", "reason": "photos show it"}),
        )
        .await;
        assert_eq!(
            (status, approved["requestStatus"].as_str()),
            (200, Some("REFUNDED")),
            "{approved}"
        );
        let (status, answer) = decide(
            &f,
            true,
            rid,
            json!({"decision": "REJECT", "reason": "changed my mind"}),
        )
        .await;
        assert_eq!((status, code(&answer)), (409, "REFUND_REQUEST_DECIDED"));
        let (status, again) = decide(&f, true, rid, json!({"decision": "APPROVE"})).await;
        assert_eq!(
            (status, &again["providerRefundId"]),
            (200, &approved["providerRefundId"])
        );

        // The rest of the order, then a replay of the first request after
        // the order became REFUNDED: still the original answer.
        let (status, rest) = ask(&f, "u1", id, line("b", json!(1)), None).await;
        assert_eq!(status, 201, "{rest}");
        let (status, _) = decide(
            &f,
            true,
            rest["refundRequestId"].as_str().unwrap(),
            json!({"decision": "APPROVE"}),
        )
        .await;
        assert_eq!(status, 200);
        let refunded = f.orders.get(id).await.unwrap().unwrap();
        assert_eq!(
            (refunded.order_status, refunded.refunded_amount),
            (OrderStatus::Refunded, 450)
        );
        let (status, replay) = ask(&f, "u1", id, line("a", json!(2)), Some("k-1")).await;
        assert_eq!((status, &replay), (201, &first));
        let (status, answer) = ask(&f, "u1", id, line("a", json!(1)), Some("k-2")).await;
        assert_eq!((status, code(&answer)), (409, "ORDER_NOT_REFUNDABLE"));

        // The buyer's list and the admin's queue.
        let (status, mine) = listed(&f, "u1", id).await;
        assert_eq!(status, 200);
        let statuses: Vec<&str> = mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestStatus"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["REFUNDED", "REFUNDED"]);
        assert_eq!(listed(&f, "u2", id).await.0, 404);
        let (status, refunded) = queue(&f, true, Some("REFUNDED")).await;
        assert_eq!(
            (status, refunded["items"].as_array().unwrap().len()),
            (200, 2)
        );
        let (status, open) = queue(&f, true, None).await;
        assert_eq!((status, open["items"].as_array().unwrap().len()), (200, 0));
        let (status, answer) = queue(&f, true, Some("done")).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some("status"))
        );
        assert_eq!(queue(&f, false, None).await.0, 403);
    }

    fn provider() -> adapters::payments::sandbox::SandboxProvider {
        adapters::payments::sandbox::SandboxProvider::new("s", "https://sandbox.test")
    }

    async fn file(
        f: &Fixture,
        order_id: &str,
        quantity: i64,
        return_goods: bool,
    ) -> Result<domain::refund_requests::RefundRequest, RefundRequestError> {
        let order = f.orders.get(order_id).await.unwrap().unwrap();
        let body = RefundRequestBody {
            items: vec![LineRequest {
                product_id: "a".into(),
                quantity,
            }],
            reason: "dented".into(),
            return_goods,
        };
        let filing = Filing {
            order: &order,
            lines: body.lines_of(&order)?,
            reason: body.reason(),
            return_goods,
            idempotency: None,
        };
        match requests(f).file(filing, &order.user_id).await? {
            Filed::Filed(request) => Ok(*request),
            Filed::Replayed(_) => panic!("no key was sent"),
        }
    }

    /// The outbox's OrderLinesRefunded events of an order.
    async fn lines_refunded(f: &Fixture, order_id: &str) -> Vec<Value> {
        let out =
            f.db.client
                .scan()
                .table_name(&f.db.tables.events)
                .send()
                .await
                .unwrap();
        out.items()
            .iter()
            .filter_map(|item| match item.get("envelope") {
                Some(AttributeValue::S(s)) => serde_json::from_str::<Value>(s).ok(),
                _ => None,
            })
            .filter(|e| {
                e["type"] == "OrderLinesRefunded" && e["data"]["order"]["orderId"] == order_id
            })
            .collect()
    }

    /// Issue 25: partial refunds give each unit back to the shard it was
    /// sold from, the units after those refunded before.
    #[tokio::test]
    async fn partial_refunds_restock_the_shards_the_units_came_from() {
        let f = fixture().await;
        f.product("a", 100, 3).await;
        f.db.shard_product("a", 3, 3).await;
        let order = f
            .paid_order_of("u1", json!({"productId": "a", "quantity": 3}))
            .await;
        assert_eq!(f.db.shard_counters("a").await, vec![(0, 0, 1); 3]);
        let parts = order.stock_taken["a"].clone();
        for (quantity, restocked) in [(1, 1), (2, 3)] {
            let request = file(&f, &order.order_id, quantity, false).await.unwrap();
            requests(&f)
                .approve(
                    &request.refund_request_id,
                    "ops",
                    None,
                    &f.payments,
                    &provider(),
                    "c",
                )
                .await
                .unwrap();
            let shards = f.db.shard_counters("a").await;
            for (i, part) in parts.iter().enumerate() {
                let back = i < restocked;
                assert_eq!(
                    shards[part.shard as usize],
                    if back { (1, 0, 0) } else { (0, 0, 1) }
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_requests_never_claim_more_than_a_line_holds() {
        let f = fixture().await;
        f.product("a", 100, 10).await;
        let order = f
            .paid_order_of("u1", json!({"productId": "a", "quantity": 3}))
            .await;
        let mut racers = Vec::new();
        for _ in 0..10 {
            let (f, id) = (f.clone(), order.order_id.clone());
            racers.push(tokio::spawn(async move { file(&f, &id, 1, true).await }));
        }
        let (mut filed, mut exceeded) = (0, 0);
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => filed += 1,
                Err(RefundRequestError::QuantityExceeded { claimable: 0, .. }) => exceeded += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!((filed, exceeded), (3, 7));
        let order = f.orders.get(&order.order_id).await.unwrap().unwrap();
        assert_eq!(order.refund_claims["a"], 3);
        let (listed, _) = requests(&f)
            .list_for_order(&order.order_id, 50, None)
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        // More than bought is the request's own fault: 400 naming the field.
        let more = file(&f, &order.order_id, 4, true).await.unwrap_err();
        assert!(
            matches!(&more, RefundRequestError::Invalid(e) if e.field == "items[0].quantity"),
            "{more:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn approvals_refund_once_restock_returns_and_the_last_refunds_the_order() {
        let f = fixture().await;
        f.product("a", 100, 10).await;
        let order = f
            .paid_order_of("u1", json!({"productId": "a", "quantity": 3}))
            .await;
        let id = order.order_id.clone();
        let shipment = json!({"carrier": "SF", "trackingNumber": "SF1"});
        assert_eq!(f.ship(true, &id, shipment).await.0, 201);
        assert_eq!(f.receive("u1", &id).await.0, 200);
        let returned = file(&f, &id, 1, true).await.unwrap();
        assert_eq!(returned.amount, 100);

        // Two admins approve at once: one refund, one restock, one event.
        let mut approvals = Vec::new();
        for admin in ["ops1", "ops2"] {
            let (f, rid) = (f.clone(), returned.refund_request_id.clone());
            approvals.push(tokio::spawn(async move {
                requests(&f)
                    .approve(&rid, admin, None, &f.payments, &provider(), "c")
                    .await
            }));
        }
        for approval in approvals {
            let done = approval.await.unwrap().unwrap();
            assert_eq!(done.request_status, RefundRequestStatus::Refunded);
        }
        let partly = f.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(partly.order_status, OrderStatus::PartiallyRefunded);
        assert_eq!(
            (partly.refunded_amount, partly.refunded_units["a"]),
            (100, 1)
        );
        assert_eq!(f.counters("a").await, (8, 0, 2));
        let payment = f
            .payments
            .get(partly.paid_payment_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment.refunds.len(), 1);
        assert_eq!(payment.refunds[&returned.refund_request_id].amount, 100);
        assert_eq!(
            payment.payment_status,
            domain::payments::PaymentStatus::Succeeded
        );
        assert_eq!(lines_refunded(&f, &id).await.len(), 1);
        // Approving again later changes nothing.
        requests(&f)
            .approve(
                &returned.refund_request_id,
                "ops1",
                None,
                &f.payments,
                &provider(),
                "c",
            )
            .await
            .unwrap();
        assert_eq!(lines_refunded(&f, &id).await.len(), 1);

        // The other two units, kept by the buyer: refunded, not restocked;
        // nothing is left, so the order and its payment are refunded.
        let kept = file(&f, &id, 2, false).await.unwrap();
        let done = requests(&f)
            .approve(
                &kept.refund_request_id,
                "ops1",
                Some("ok"),
                &f.payments,
                &provider(),
                "c",
            )
            .await
            .unwrap();
        assert!(!done.restocked);
        let refunded = f.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(refunded.order_status, OrderStatus::Refunded);
        assert_eq!(refunded.refunded_amount, 300);
        assert_eq!(f.counters("a").await, (8, 0, 2));
        let payment = f.payments.get(&payment.payment_id).await.unwrap().unwrap();
        assert_eq!(
            payment.payment_status,
            domain::payments::PaymentStatus::Refunded
        );
        assert_eq!(lines_refunded(&f, &id).await.len(), 2);
        // Nothing left to ask for.
        assert!(matches!(
            file(&f, &id, 1, true).await,
            Err(RefundRequestError::NotRefundable { .. })
        ));
    }

    #[tokio::test]
    async fn a_rejection_frees_the_units_and_a_cancel_waits_for_open_requests() {
        let f = fixture().await;
        f.product("a", 100, 10).await;
        let order = f.paid_order("u1").await;
        let id = order.order_id.clone();
        let request = file(&f, &id, 1, false).await.unwrap();
        // A paid order with a claimed line is not cancelled whole.
        let (status, body) = f.cancel("u1", &id).await;
        assert_eq!(
            (status, code(&body)),
            (409, "ORDER_NOT_CANCELLABLE"),
            "{body}"
        );
        let rejected = requests(&f)
            .reject(&request.refund_request_id, "ops", "not damaged")
            .await
            .unwrap();
        assert_eq!(rejected.request_status, RefundRequestStatus::Rejected);
        // Rejecting again is the same outcome; approving now is too late.
        requests(&f)
            .reject(&request.refund_request_id, "ops", "not damaged")
            .await
            .unwrap();
        assert!(matches!(
            requests(&f)
                .approve(
                    &request.refund_request_id,
                    "ops",
                    None,
                    &f.payments,
                    &provider(),
                    "c"
                )
                .await,
            Err(RefundRequestError::AlreadyDecided { .. })
        ));
        let order = f.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.refund_claims["a"], 0);
        assert_eq!(order.order_status, OrderStatus::Paid);
        let (status, _) = f.cancel("u1", &id).await;
        assert_eq!(status, 202);
    }
}

/// One page of the console's queue of orders to ship.
async fn to_ship(f: &Fixture, limit: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = ApiRequest::get("/admin/orders/to-ship")
        .query("limit", limit)
        .as_admin("ops");
    if let Some(token) = token {
        req = req.query("nextToken", token);
    }
    respond(find_orders_to_ship::handle(&f.orders, req.build()).await)
}

/// Every order id the queue holds, page by page.
async fn queue_ids(f: &Fixture, limit: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (status, page) = to_ship(f, limit, token.as_deref()).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit.parse().unwrap(), "{page}");
        ids.extend(
            items
                .iter()
                .map(|o| o["orderId"].as_str().unwrap().to_owned()),
        );
        match page["nextToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn the_queue_to_ship_holds_paid_unshipped_orders_oldest_payment_first() {
    let f = fixture().await;
    f.product("a", 100, 20).await;
    let (_, unpaid) = f
        .create("u1", json!({"productId": "a", "quantity": 1}))
        .await;
    let mut paid = Vec::new();
    for user in ["u1", "u2", "u1", "u3", "u2", "u1", "u4"] {
        paid.push(f.paid_order(user).await.order_id);
    }
    // Only admins see it; a bad limit or token is 400 naming it.
    let req = ApiRequest::get("/admin/orders/to-ship").as_user("u1");
    assert_eq!(
        respond(find_orders_to_ship::handle(&f.orders, req.build()).await).0,
        403
    );
    let (status, body) = to_ship(&f, "0", None).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("limit"), "{body}");
    let (status, body) = to_ship(&f, "5", Some("bm90LWEtdG9rZW4")).await;
    assert_eq!((status, code(&body)), (400, "INVALID_NEXT_TOKEN"));

    // Every paid order once, in the order they were paid, whatever the
    // page size (the shards are merged, and pages end between shards).
    for limit in ["1", "2", "3", "7", "100"] {
        assert_eq!(queue_ids(&f, limit).await, paid, "limit {limit}");
    }
    assert!(!paid.contains(&unpaid["orderId"].as_str().unwrap().to_owned()));

    // Shipping takes an order out, and so does a cancellation whose refund
    // has begun; the others stay in their order.
    let shipment = json!({"carrier": "SF Express", "trackingNumber": "SF1"});
    assert_eq!(f.ship(true, &paid[1], shipment).await.0, 201);
    let cancelled = f.orders.get(&paid[4]).await.unwrap().unwrap();
    f.orders.claim_for_refund(&cancelled).await.unwrap();
    let left: Vec<String> = paid
        .iter()
        .enumerate()
        .filter(|(i, _)| ![1, 4].contains(i))
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(queue_ids(&f, "2").await, left);
    // The shipped order no longer carries the index's key at all.
    let item =
        f.db.client
            .get_item()
            .table_name(&f.db.tables.orders)
            .key("orderId", AttributeValue::S(paid[1].clone()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
    assert!(!item.contains_key("shipShard"), "{item:?}");
    assert!(item.contains_key("paidAt"));
}
