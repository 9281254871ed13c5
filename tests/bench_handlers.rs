//! Warm handlers in-process against DynamoDB Local: p50/p99 of each handler
//! next to the bare SDK calls it needs (where written), and the DynamoDB
//! round trips of each operation as an SDK interceptor counts them.
//! createOrder and its contention figures are in `bench_orders.rs`.
//!
//! Run with `scripts/bench handlers`. Figures, not pass/fail.

use std::future::Future;
use std::time::{Duration, Instant};

use adapters::catalog::Catalog;
use adapters::orders::Orders;
use adapters::payments::Payments;
use adapters::payments::sandbox::SandboxProvider;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use domain::events::{Envelope, EventType};
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::{RoundTrips, TestDb, counted_client};
use system_tests::sqs::{batch, failed_ids, message};
use update_order_status::OrderStatusConsumer;

const SAMPLES: usize = 1000;
const WARMUP: usize = 3000;
const WINDOW: Duration = Duration::from_secs(900);

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn respond(result: http_edge::ApiResult) -> (u16, Value) {
    parts(&http_edge::http::into_response(result))
}

/// Everything an operation needs, on one client (plain or counted).
struct Services {
    catalog: Catalog,
    orders: Orders,
    payments: Payments,
    provider: SandboxProvider,
    consumer: OrderStatusConsumer<SandboxProvider>,
}

impl Services {
    fn new(client: aws_sdk_dynamodb::Client, db: &TestDb) -> Self {
        let provider = || SandboxProvider::new("bench-secret", "https://sandbox.test");
        Self {
            catalog: Catalog::new(client.clone(), &db.tables),
            orders: Orders::new(client.clone(), db.tables.clone()),
            payments: Payments::new(client.clone(), db.tables.clone()),
            provider: provider(),
            consumer: OrderStatusConsumer {
                orders: Orders::new(client.clone(), db.tables.clone()),
                payments: Payments::new(client, db.tables.clone()),
                provider: provider(),
                markers_table: db.tables.processed_events.clone(),
            },
        }
    }

    /// The handler and its response as API Gateway gets it; the request is
    /// built before and the answer not parsed after, so that only our code
    /// is timed.
    async fn get_product(&self, req: lambda_http::Request) -> u16 {
        let result = get_product_info::handle(&self.catalog, req).await;
        http_edge::http::into_response(result).status().as_u16()
    }

    async fn list_products(&self, req: lambda_http::Request) -> u16 {
        let result = list_products::handle(&self.catalog, req).await;
        http_edge::http::into_response(result).status().as_u16()
    }

    async fn order(&self, user: &str) -> String {
        let req = ApiRequest::post("/orders")
            .as_user(user)
            .json(json!({"productId": "tea", "quantity": 1}));
        let (status, order) =
            respond(create_order::handle(&self.orders, WINDOW, req.build()).await);
        assert_eq!(status, 201, "{order}");
        order["orderId"].as_str().unwrap().to_owned()
    }

    async fn initiate(&self, user: &str, order_id: &str) -> Value {
        let req = ApiRequest::post("/payments")
            .as_user(user)
            .json(json!({"orderId": order_id, "paymentMethod": "ALIPAY"}));
        let (status, payment) = respond(
            initiate_payment::handle(&self.orders, &self.payments, &self.provider, req.build())
                .await,
        );
        assert_eq!(status, 201, "{payment}");
        payment
    }

    async fn notify(&self, payment: &Value) -> u16 {
        let body = json!({
            "paymentId": payment["paymentId"], "orderId": payment["orderId"],
            "paymentStatus": "SUCCESS", "amount": payment["amount"],
            "currency": payment["currency"], "providerTransactionId": "tx",
        })
        .to_string();
        let signature = self
            .provider
            .sign(domain::clock::now().unix_timestamp(), body.as_bytes())
            .await
            .unwrap();
        let req = ApiRequest::post("/payments/notify")
            .header("content-type", "application/json")
            .header("x-payment-signature", &signature)
            .raw_body(&body);
        respond(payment_result_notify::handle(&self.payments, &self.provider, req.build()).await).0
    }

    /// The PaymentSucceeded event the callback wrote, as SQS delivers it.
    async fn payment_succeeded(&self, payment: &Value) -> String {
        let settled = self
            .payments
            .get(payment["paymentId"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let at = domain::clock::now_rfc3339();
        serde_json::to_string(
            &Envelope::new(EventType::PaymentSucceeded, "bench", &at, &settled).unwrap(),
        )
        .unwrap()
    }

    async fn consume(&self, event: &str) {
        let response = self
            .consumer
            .handle_batch(batch(vec![message("m", event)]))
            .await;
        assert!(failed_ids(&response).is_empty());
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn put(table: &str, item: adapters::db::Item, condition: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression(condition)
                .build()
                .unwrap(),
        )
        .build()
}

fn outbox(db: &TestDb, event_type: EventType, data: &Value) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            adapters::outbox::put(
                &Envelope::new(event_type, "bench", &domain::clock::now_rfc3339(), data).unwrap(),
                &db.tables.events,
            )
            .unwrap(),
        )
        .build()
}

/// The requests initiatePayment makes, written directly: read the order,
/// then put the payment and point the order at it, in one transaction.
async fn bare_initiate(db: &TestDb, order_id: &str) {
    let client = &db.client;
    let order = client
        .get_item()
        .table_name(&db.tables.orders)
        .key("orderId", s(order_id))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let order: domain::orders::Order = serde_dynamo::from_item(order).unwrap();
    let payment_id = domain::ids::new_id();
    let now = domain::clock::now_rfc3339();
    let payment: adapters::db::Item = [
        ("paymentId", s(&payment_id)),
        ("orderId", s(order_id)),
        ("userId", s(&order.user_id)),
        ("amount", n(order.order_amount)),
        ("currency", s(&order.currency)),
        ("paymentMethod", s("ALIPAY")),
        ("paymentStatus", s("PENDING")),
        (
            "paymentUrl",
            s(&format!("https://sandbox.test/pay/{payment_id}")),
        ),
        ("createdAt", s(&now)),
        ("updatedAt", s(&now)),
        ("expiresAt", s(&order.expires_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let claim = Update::builder()
        .table_name(&db.tables.orders)
        .key("orderId", s(order_id))
        .update_expression("SET activePaymentId = :p, updatedAt = :now")
        .condition_expression("orderStatus = :pending AND attribute_not_exists(activePaymentId)")
        .expression_attribute_values(":p", s(&payment_id))
        .expression_attribute_values(":now", s(&now))
        .expression_attribute_values(":pending", s("PENDING_PAYMENT"))
        .build()
        .unwrap();
    client
        .transact_write_items()
        .transact_items(put(
            &db.tables.payments,
            payment,
            "attribute_not_exists(paymentId)",
        ))
        .transact_items(TransactWriteItem::builder().update(claim).build())
        .send()
        .await
        .unwrap();
}

/// The requests paymentResultNotify makes: read the payment, then settle it,
/// write its event and the callback's audit record in one transaction.
async fn bare_notify(db: &TestDb, payment_id: &str) {
    let client = &db.client;
    let payment = client
        .get_item()
        .table_name(&db.tables.payments)
        .key("paymentId", s(payment_id))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let payment: domain::payments::Payment = serde_dynamo::from_item(payment).unwrap();
    let now = domain::clock::now_rfc3339();
    let settle = Update::builder()
        .table_name(&db.tables.payments)
        .key("paymentId", s(payment_id))
        .update_expression("SET paymentStatus = :to, updatedAt = :now, providerTransactionId = :tx")
        .condition_expression("paymentStatus = :from")
        .expression_attribute_values(":to", s("SUCCEEDED"))
        .expression_attribute_values(":from", s("PENDING"))
        .expression_attribute_values(":now", s(&now))
        .expression_attribute_values(":tx", s("tx"))
        .build()
        .unwrap();
    let audit: adapters::db::Item = [
        ("paymentId", s(payment_id)),
        ("receivedAt", s(&format!("{now}#{}", domain::ids::new_id()))),
        ("outcome", s("APPLIED")),
        ("paymentStatus", s("PENDING")),
        ("notification", s(&"n".repeat(200))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(settle).build())
        .transact_items(outbox(
            db,
            EventType::PaymentSucceeded,
            &serde_json::to_value(&payment).unwrap(),
        ))
        .transact_items(put(
            &db.tables.payment_callbacks,
            audit,
            "attribute_not_exists(receivedAt)",
        ))
        .send()
        .await
        .unwrap();
}

/// The requests the order-status consumer makes for a PaymentSucceeded:
/// read the order, then mark it paid, move its units from reserved to sold,
/// write OrderPaid and the event's processed marker in one transaction.
async fn bare_consume(db: &TestDb, order_id: &str) {
    let client = &db.client;
    let order = client
        .get_item()
        .table_name(&db.tables.orders)
        .key("orderId", s(order_id))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let order: domain::orders::Order = serde_dynamo::from_item(order).unwrap();
    let now = domain::clock::now_rfc3339();
    let paid = Update::builder()
        .table_name(&db.tables.orders)
        .key("orderId", s(order_id))
        .update_expression("SET orderStatus = :paid, updatedAt = :now")
        .condition_expression("orderStatus = :pending")
        .expression_attribute_values(":paid", s("PAID"))
        .expression_attribute_values(":pending", s("PENDING_PAYMENT"))
        .expression_attribute_values(":now", s(&now))
        .build()
        .unwrap();
    let mut transaction = client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(paid).build());
    for line in &order.items {
        let sold = Update::builder()
            .table_name(&db.tables.products)
            .key("productId", s(&line.product_id))
            .update_expression("SET reserved = reserved - :q, sold = sold + :q")
            .condition_expression("reserved >= :q")
            .expression_attribute_values(":q", n(line.quantity))
            .build()
            .unwrap();
        transaction = transaction.transact_items(TransactWriteItem::builder().update(sold).build());
    }
    let marker: adapters::db::Item = [
        ("markerId", s(&format!("bench#{}", domain::ids::new_id()))),
        ("processedAt", s(&now)),
        (
            "expiresAtEpoch",
            n(domain::clock::now().unix_timestamp() + 86_400),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    transaction
        .transact_items(outbox(
            db,
            EventType::OrderPaid,
            &serde_json::to_value(&order).unwrap(),
        ))
        .transact_items(put(
            &db.tables.processed_events,
            marker,
            "attribute_not_exists(markerId)",
        ))
        .send()
        .await
        .unwrap();
}

fn get_product_request() -> lambda_http::Request {
    ApiRequest::get("/products/{productId}")
        .path_param("productId", "tea")
        .as_user("u")
        .build()
}

fn list_products_request() -> lambda_http::Request {
    ApiRequest::get("/products").as_user("u").build()
}

/// Times `handler` and `bare` alternately over SAMPLES runs each, each run
/// on its own untimed `setup` (a fresh order or payment).
async fn time_both<S, SF, H, HF, B, BF>(
    setup: S,
    handler: H,
    bare: B,
) -> (Vec<Duration>, Vec<Duration>)
where
    S: Fn(usize) -> SF,
    SF: Future,
    H: Fn(SF::Output) -> HF,
    HF: Future,
    B: Fn(SF::Output) -> BF,
    BF: Future,
{
    let (mut h, mut b) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for i in 0..SAMPLES {
        let input = setup(2 * i).await;
        let t = Instant::now();
        handler(input).await;
        h.push(t.elapsed());
        let input = setup(2 * i + 1).await;
        let t = Instant::now();
        bare(input).await;
        b.push(t.elapsed());
    }
    h.sort();
    b.sort();
    (h, b)
}

struct Row {
    name: &'static str,
    handler: Vec<Duration>,
    bare: Option<Vec<Duration>>,
    trips: RoundTrips,
}

fn print(rows: &[Row]) {
    println!(
        "| operation | handler p50 / p99 (ms) | bare SDK p50 / p99 (ms) | handler / bare at p50 | DynamoDB round trips |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        let (h50, h99) = (
            percentile(&row.handler, 0.5),
            percentile(&row.handler, 0.99),
        );
        let (bare, ratio) = match &row.bare {
            Some(b) => {
                let (b50, b99) = (percentile(b, 0.5), percentile(b, 0.99));
                (format!("{b50:.2} / {b99:.2}"), format!("{:.2}x", h50 / b50))
            }
            None => ("not written".into(), "-".into()),
        };
        println!(
            "| {} | {h50:.2} / {h99:.2} | {bare} | {ratio} | {} ({}) |",
            row.name,
            row.trips.count(),
            row.trips.operations()
        );
    }
    println!(
        "(samples: {SAMPLES} per figure after {WARMUP} warm-up calls; handler and bare interleaved where both exist)"
    );
}

async fn run() {
    let db = TestDb::new().await;
    for i in 0..20 {
        db.add_product(&format!("p{i:02}"), 1000 + i, 10).await;
    }
    db.add_product("tea", 1999, 1_000_000_000).await;
    let db = &db;
    let plain = &Services::new(db.client.clone(), db);
    let (client_with_count, trips) = counted_client().await;
    let counted = Services::new(client_with_count, db);
    let client = &db.client;

    // DynamoDB Local's JVM speeds up over its first few thousand calls.
    for _ in 0..WARMUP {
        assert_eq!(plain.get_product(get_product_request()).await, 200);
    }

    let bare_get = || async {
        client
            .get_item()
            .table_name(&db.tables.products)
            .key("productId", AttributeValue::S("tea".into()))
            .send()
            .await
            .unwrap();
    };
    let bare_scan = || async {
        client
            .scan()
            .table_name(&db.tables.products)
            .limit(list_products::DEFAULT_LIMIT)
            .send()
            .await
            .unwrap();
    };
    let mut rows = Vec::new();

    let (handler, bare) = time_both(
        |_| async { get_product_request() },
        |req| plain.get_product(req),
        |_| bare_get(),
    )
    .await;
    trips.reset();
    counted.get_product(get_product_request()).await;
    rows.push(Row {
        name: "getProductInfo",
        handler,
        bare: Some(bare),
        trips: trips.clone(),
    });

    let (handler, bare) = time_both(
        |_| async { list_products_request() },
        |req| plain.list_products(req),
        |_| bare_scan(),
    )
    .await;
    let (c, t) = counted_client().await;
    Services::new(c, db)
        .list_products(list_products_request())
        .await;
    rows.push(Row {
        name: "listProducts",
        handler,
        bare: Some(bare),
        trips: t,
    });

    // Each payment needs a fresh order; each callback a fresh payment: the
    // setup is untimed.
    let (handler, bare) = time_both(
        |i| async move {
            let user = format!("payer{}", i % 50);
            (user.clone(), plain.order(&user).await)
        },
        |(user, order_id)| async move { plain.initiate(&user, &order_id).await },
        |(_, order_id)| async move { bare_initiate(db, &order_id).await },
    )
    .await;
    let (c, t) = counted_client().await;
    let svc = Services::new(c, db);
    let order_id = plain.order("counted").await;
    t.reset();
    svc.initiate("counted", &order_id).await;
    rows.push(Row {
        name: "initiatePayment",
        handler,
        bare: Some(bare),
        trips: t,
    });

    let (handler, bare) = time_both(
        |i| async move {
            let user = format!("notified{}", i % 50);
            let order_id = plain.order(&user).await;
            plain.initiate(&user, &order_id).await
        },
        |payment| async move { assert_eq!(plain.notify(&payment).await, 200) },
        |payment| async move { bare_notify(db, payment["paymentId"].as_str().unwrap()).await },
    )
    .await;
    let (c, t) = counted_client().await;
    let svc = Services::new(c, db);
    let order_id = plain.order("counted").await;
    let payment = plain.initiate("counted", &order_id).await;
    t.reset();
    assert_eq!(svc.notify(&payment).await, 200);
    rows.push(Row {
        name: "paymentResultNotify",
        handler,
        bare: Some(bare),
        trips: t,
    });

    let (handler, bare) = time_both(
        |i| async move {
            let user = format!("consumed{}", i % 50);
            let order_id = plain.order(&user).await;
            let payment = plain.initiate(&user, &order_id).await;
            assert_eq!(plain.notify(&payment).await, 200);
            (order_id, plain.payment_succeeded(&payment).await)
        },
        |(_, event)| async move { plain.consume(&event).await },
        |(order_id, _)| async move { bare_consume(db, &order_id).await },
    )
    .await;
    let (c, t) = counted_client().await;
    let svc = Services::new(c, db);
    let order_id = plain.order("counted").await;
    let payment = plain.initiate("counted", &order_id).await;
    assert_eq!(plain.notify(&payment).await, 200);
    let event = plain.payment_succeeded(&payment).await;
    t.reset();
    svc.consume(&event).await;
    rows.push(Row {
        name: "order-status consumer, batch of 1 PaymentSucceeded",
        handler,
        bare: Some(bare),
        trips: t,
    });

    print(&rows);
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
