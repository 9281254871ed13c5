//! A stalled DynamoDB: a local TCP proxy in front of DynamoDB Local that
//! stops forwarding (the connection stays open, no byte moves, as with a
//! hung dependency). The handlers, with production's SDK timeouts, answer
//! 503 with `Retry-After` well before the Lambda timeout, write nothing,
//! and a consumer returns its batch to SQS instead of hanging past its
//! timeout (after one message has waited out the SDK, the rest go back
//! untried).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use adapters::catalog::Catalog;
use adapters::orders::Orders;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use domain::events::{Envelope, EventType};
use serde_json::json;
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The template's function timeout: a 503 must come well before it.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Forwards to DynamoDB Local until `stall` is set; then holds every byte
/// on every connection, open or new.
struct StallingProxy {
    url: String,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, flag.clone()));
                    tokio::spawn(pump(server_read, client_write, flag));
                });
            }
        });
        Self { url, stalled }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes one way, holding them while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A DynamoDB client built as production builds it (`adapters::db`'s timeouts
/// and retries), pointed at the proxy.
async fn client_through(proxy: &StallingProxy) -> aws_sdk_dynamodb::Client {
    let config = adapters::db::config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(&proxy.url)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

async fn setup() -> (TestDb, StallingProxy, aws_sdk_dynamodb::Client) {
    let db = TestDb::new().await;
    let upstream = system_tests::required_env("DYNAMODB_ENDPOINT")
        .trim_start_matches("http://")
        .to_owned();
    let proxy = StallingProxy::start(upstream).await;
    let client = client_through(&proxy).await;
    (db, proxy, client)
}

fn assert_unavailable_in_time(status: u16, body: &serde_json::Value, elapsed: Duration) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    println!("503 after {elapsed:?} (function timeout {FUNCTION_TIMEOUT:?})");
    assert!(
        elapsed < FUNCTION_TIMEOUT - Duration::from_secs(2),
        "a stalled DynamoDB took {elapsed:?}: the Lambda would have timed out first"
    );
}

#[tokio::test]
async fn a_product_read_answers_503_with_retry_after_before_the_function_times_out() {
    let (db, proxy, client) = setup().await;
    db.add_product("stalled-tea", 1000, 5).await;
    let catalog = Catalog::new(client, &db.tables);
    let get = || ApiRequest::get("/products/stalled-tea").path_param("productId", "stalled-tea");

    // Through the proxy, it works...
    let response = http_edge::http::into_response(
        get_product_info::handle(&catalog, get().as_user("u").build()).await,
    );
    assert_eq!(response.status(), 200);

    // ...until DynamoDB stalls, on the connection already open.
    proxy.stall();
    let started = Instant::now();
    let response = http_edge::http::into_response(
        get_product_info::handle(&catalog, get().as_user("u").build()).await,
    );
    let elapsed = started.elapsed();
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, body) = parts(&response);
    assert_unavailable_in_time(status, &body, elapsed);
}

#[tokio::test]
async fn an_order_against_a_stalled_database_answers_503_and_reserves_nothing() {
    let (db, proxy, client) = setup().await;
    db.add_product("stalled-cup", 2500, 3).await;
    let orders = Orders::new(client, db.tables.clone());
    proxy.stall();

    let started = Instant::now();
    let req = ApiRequest::post("/orders")
        .as_user("u")
        .json(json!({"productId": "stalled-cup", "quantity": 1}));
    let response = http_edge::http::into_response(
        create_order::handle(&orders, Duration::from_secs(900), req.build()).await,
    );
    let (status, body) = parts(&response);
    assert_unavailable_in_time(status, &body, started.elapsed());

    // Nothing reached the database: the product is as it was, no order.
    let product = db
        .client
        .get_item()
        .table_name(&db.tables.products)
        .key("productId", AttributeValue::S("stalled-cup".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(product["stock"], AttributeValue::N("3".into()));
    assert_eq!(product["reserved"], AttributeValue::N("0".into()));
    let orders = db
        .client
        .scan()
        .table_name(&db.tables.orders)
        .send()
        .await
        .unwrap();
    assert_eq!(orders.count(), 0);
}

#[tokio::test]
async fn a_consumer_returns_its_batch_to_the_queue_instead_of_hanging() {
    let (db, proxy, client) = setup().await;
    let consumer = analytics::AnalyticsConsumer {
        sales: adapters::sales::Sales::new(client, db.tables.clone()),
        markers_table: db.tables.processed_events.clone(),
    };
    let order = domain::orders::Order {
        order_id: domain::ids::new_id(),
        user_id: "u".into(),
        items: vec![],
        order_amount: 0,
        currency: "CNY".into(),
        order_status: domain::orders::OrderStatus::Paid,
        created_at: "2026-11-20T09:00:00.000Z".into(),
        updated_at: "2026-11-20T09:00:00.000Z".into(),
        expires_at: "2026-11-20T09:15:00.000Z".into(),
        active_payment_id: None,
        paid_payment_id: None,
        shipment: None,
        completed_at: None,
        refund_claims: Default::default(),
        refunded_units: Default::default(),
        refunded_amount: 0,
        stock_taken: Default::default(),
    };
    let messages = (1..=3)
        .map(|i| {
            let envelope = Envelope::new(
                EventType::OrderPaid,
                "c",
                "2026-11-20T09:00:00.000Z",
                &order,
            )
            .unwrap();
            message(&format!("m{i}"), &serde_json::to_string(&envelope).unwrap())
        })
        .collect();
    proxy.stall();

    let started = Instant::now();
    let response = consumer.handle_batch(batch(messages)).await;
    let elapsed = started.elapsed();
    // The first waited out the SDK's timeout; the others, which would each
    // have waited as long, went back untried.
    assert_eq!(failed_ids(&response), ["m1", "m2", "m3"]);
    println!("batch of 3 returned after {elapsed:?}");
    assert!(
        elapsed < FUNCTION_TIMEOUT - Duration::from_secs(2),
        "{elapsed:?}"
    );
}
