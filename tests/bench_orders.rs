//! createOrder against DynamoDB Local: handler latency next to the bare SDK
//! calls it needs, round trips, and throughput on one hot product.
//!
//! Run with `scripts/bench` (it starts DynamoDB Local). Prints a Markdown
//! table; figures, not pass/fail: targets live in the issue tracker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters::db::Transact;
use adapters::orders::{OrderRequest, Orders, Placement, Retries};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use domain::orders::LineRequest;
use serde_json::json;
use system_tests::api::ApiRequest;
use system_tests::dynamo::{TestDb, counted_client};

const WINDOW: Duration = Duration::from_secs(900);
const SAMPLES: usize = 1500;
const WARMUP: usize = 3000;
const CLIENTS: usize = 32;
const CONTENDED_ORDERS: usize = 3000;

/// A reservation of one unit, as createOrder's transaction makes it.
const TAKE_ONE: &str = "SET stock = stock - :q, reserved = reserved + :q";
const IN_STOCK: &str = "stock >= :q";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// An order item of the size createOrder writes (one line).
fn order_item(order_id: &str, product: &str) -> adapters::db::Item {
    [
        ("orderId".to_owned(), s(order_id)),
        ("userId".to_owned(), s("bench-user")),
        (
            "items".to_owned(),
            AttributeValue::L(vec![AttributeValue::M(
                [
                    ("productId".to_owned(), s(product)),
                    ("name".to_owned(), s("hot name")),
                    ("quantity".to_owned(), AttributeValue::N("1".into())),
                    ("unitPrice".to_owned(), AttributeValue::N("1999".into())),
                    ("lineAmount".to_owned(), AttributeValue::N("1999".into())),
                ]
                .into(),
            )]),
        ),
        ("orderAmount".to_owned(), AttributeValue::N("1999".into())),
        ("currency".to_owned(), s("CNY")),
        ("orderStatus".to_owned(), s("PENDING_PAYMENT")),
        ("createdAt".to_owned(), s("2026-11-22T00:00:00.000Z")),
        ("updatedAt".to_owned(), s("2026-11-22T00:00:00.000Z")),
        ("expiresAt".to_owned(), s("2026-11-22T00:15:00.000Z")),
        ("reservationShard".to_owned(), s("3")),
    ]
    .into()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Bench {
    db: TestDb,
    orders: Orders,
}

impl Bench {
    async fn product(&self, id: &str, stock: i64) {
        self.db.add_product(id, 1999, stock).await;
    }

    /// One createOrder through the handler, as the Lambda runs it.
    async fn handler_call(&self, product: &str, user: &str) -> u16 {
        let req = ApiRequest::post("/orders")
            .as_user(user)
            .json(json!({"productId": product, "quantity": 1}));
        http_edge::http::into_response(
            create_order::handle(&self.orders, WINDOW, req.build()).await,
        )
        .status()
        .as_u16()
    }

    /// The same DynamoDB work with none of our code: BatchGetItem of the
    /// product, then one transaction reserving a unit and putting an order
    /// and an event of the same size. Whether the transaction committed.
    async fn bare_calls(&self, client: &Client, product: &str, n: usize) -> bool {
        let t = &self.db.tables;
        let keys = KeysAndAttributes::builder()
            .keys([("productId".to_owned(), s(product))].into())
            .build()
            .unwrap();
        let out = client
            .batch_get_item()
            .request_items(&t.products, keys)
            .send()
            .await
            .unwrap();
        let item = &out.responses.unwrap()[&t.products][0];
        let version = item["version"].clone();
        let order_id = format!("bare-{n}-{}", domain::ids::new_id());
        let order = order_item(&order_id, product);
        let event: adapters::db::Item = [
            ("eventId".to_owned(), s(&order_id)),
            ("type".to_owned(), s("OrderCreated")),
            ("occurredAt".to_owned(), s("2026-11-22T00:00:00.000Z")),
            ("envelope".to_owned(), s(&"x".repeat(420))),
        ]
        .into();
        client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&t.products)
                            .key("productId", s(product))
                            .update_expression(TAKE_ONE)
                            .condition_expression(format!("{IN_STOCK} AND version = :v"))
                            .expression_attribute_values(":q", AttributeValue::N("1".into()))
                            .expression_attribute_values(":v", version)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&t.orders)
                            .set_item(Some(order))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&t.events)
                            .set_item(Some(event))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .is_ok()
    }

    /// The raw conditional update a reservation is: one UpdateItem taking a
    /// unit if there is one.
    async fn reserve_bare(&self, product: &str) {
        self.db
            .client
            .update_item()
            .table_name(&self.db.tables.products)
            .key("productId", s(product))
            .update_expression(TAKE_ONE)
            .condition_expression(IN_STOCK)
            .expression_attribute_values(":q", AttributeValue::N("1".into()))
            .send()
            .await
            .unwrap();
    }

    /// The same update alone in a TransactWriteItems: what a transaction
    /// costs DynamoDB (Local) before it holds anything else. Whether it
    /// committed (it can lose a race to another on the same item).
    async fn reserve_in_transaction(&self, product: &str) -> bool {
        let update = Update::builder()
            .table_name(&self.db.tables.products)
            .key("productId", s(product))
            .update_expression(TAKE_ONE)
            .condition_expression(IN_STOCK)
            .expression_attribute_values(":q", AttributeValue::N("1".into()))
            .build()
            .unwrap();
        let item = TransactWriteItem::builder().update(update).build();
        match adapters::db::transact(&self.db.client, vec![item]).await {
            Ok(Transact::Committed) => true,
            Ok(Transact::Cancelled(_)) => false,
            Err(e) => panic!("DynamoDB Local failed a transaction: {e}"),
        }
    }

    /// [`Bench::bare_calls`] until its transaction commits. Lost races
    /// (TransactionConflict) are retried at once: no backoff, the most this
    /// shape of transaction can give.
    async fn bare_until_committed(&self, product: &str, n: usize) {
        let mut attempt = 0;
        while !self
            .bare_calls(&self.db.client, product, n * 1000 + attempt)
            .await
        {
            attempt += 1;
        }
    }
}

/// Runs `CONTENDED_ORDERS` operations from `CLIENTS` tasks; operations/s.
async fn throughput<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    throughput_of(CLIENTS, op).await
}

/// [`throughput`] from `clients` tasks.
async fn throughput_of<F, Fut>(clients: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CONTENDED_ORDERS {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    CONTENDED_ORDERS as f64 / started.elapsed().as_secs_f64()
}

/// What one sharded run measured.
struct ShardedRun {
    orders_per_s: f64,
    retries: Retries,
    /// The most reservations one stock item took in one whole second.
    hottest_per_s: usize,
    /// Each shard's reservations over the run, fewest and most.
    spread: (usize, usize),
}

/// Issue 25: `CONTENDED_ORDERS` createOrders of one unit from `clients`
/// tasks on one product spread over `shards` items. Reservations are
/// counted per item and per whole second of the run from what each order
/// recorded it took (the order's own `stockTaken`).
async fn sharded_run(bench: &Arc<Bench>, clients: usize, shards: i64, round: usize) -> ShardedRun {
    let product = format!("sharded-{clients}-{shards}-{round}");
    bench.product(&product, 100_000_000).await;
    bench.db.shard_product(&product, 100_000_000, shards).await;
    let placed = Arc::new(std::sync::Mutex::new(Vec::with_capacity(CONTENDED_ORDERS)));
    let started = Instant::now();
    let (b, log) = (bench.clone(), placed.clone());
    let orders_per_s = throughput_of(clients, move |i| {
        let (b, log, product) = (b.clone(), log.clone(), product.clone());
        async move {
            let request = OrderRequest {
                user_id: &format!("s{}", i % 97),
                lines: vec![LineRequest {
                    product_id: product.clone(),
                    quantity: 1,
                }],
                idempotency: None,
                correlation_id: "bench",
                payment_window: WINDOW,
            };
            match b.orders.place(request).await {
                Ok(Placement::Placed(order, retries)) => {
                    let shard = order.shard_units(&product, 0, 1)[0].shard;
                    log.lock()
                        .unwrap()
                        .push((started.elapsed(), shard, retries));
                }
                Ok(Placement::Replayed(_)) => unreachable!("no key was sent"),
                Err(e) => panic!("createOrder failed under contention: {e}"),
            }
        }
    })
    .await;
    let placed = placed.lock().unwrap();
    let mut retries = Retries::default();
    let seconds = placed.iter().map(|p| p.0.as_secs()).max().unwrap_or(0) as usize;
    let mut per_second = vec![vec![0usize; shards as usize]; seconds + 1];
    let mut per_shard = vec![0usize; shards as usize];
    for (at, shard, tried) in placed.iter() {
        retries.conflicts += tried.conflicts;
        retries.shortfalls += tried.shortfalls;
        per_second[at.as_secs() as usize][*shard as usize] += 1;
        per_shard[*shard as usize] += 1;
    }
    // The last second is partial: whole seconds only, unless it is all.
    let whole = if seconds > 0 {
        &per_second[..seconds]
    } else {
        &per_second[..]
    };
    let hottest_per_s = whole.iter().flatten().copied().max().unwrap_or(0);
    ShardedRun {
        orders_per_s,
        retries,
        hottest_per_s,
        spread: (
            per_shard.iter().copied().min().unwrap_or(0),
            per_shard.iter().copied().max().unwrap_or(0),
        ),
    }
}

async fn run() {
    let db = TestDb::new().await;
    let orders = Orders::new(db.client.clone(), db.tables.clone());
    let bench = Arc::new(Bench { db, orders });
    bench.product("hot", 100_000_000).await;
    let client = bench.db.client.clone();

    // DynamoDB Local's JVM speeds up over the first few thousand calls.
    for i in 0..WARMUP / 2 {
        assert_eq!(bench.handler_call("hot", "warm").await, 201);
        assert!(bench.bare_calls(&client, "hot", i).await);
    }

    // Interleaved so that drift in the JVM or the machine hits both alike.
    let (mut handler, mut bare) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for i in 0..SAMPLES {
        let t = Instant::now();
        assert_eq!(bench.handler_call("hot", "latency").await, 201);
        handler.push(t.elapsed());
        let t = Instant::now();
        assert!(bench.bare_calls(&client, "hot", i).await);
        bare.push(t.elapsed());
    }
    handler.sort();
    bare.sort();

    let (counted, round_trips) = counted_client().await;
    let counted_orders = Orders::new(counted, bench.db.tables.clone());
    let req = ApiRequest::post("/orders")
        .as_user("rt")
        .json(json!({"productId": "hot", "quantity": 1}));
    create_order::handle(&counted_orders, WINDOW, req.build())
        .await
        .unwrap();
    let trips = round_trips.count();

    bench.product("contended", 100_000_000).await;
    let b = bench.clone();
    let orders_per_s = throughput(move |i| {
        let b = b.clone();
        async move {
            assert_eq!(
                b.handler_call("contended", &format!("c{}", i % 97)).await,
                201
            );
        }
    })
    .await;
    bench.product("raw", 100_000_000).await;
    let b = bench.clone();
    let raw_per_s = throughput(move |_| {
        let b = b.clone();
        async move { b.reserve_bare("raw").await }
    })
    .await;

    bench.product("raw-transaction", 100_000_000).await;
    let b = bench.clone();
    let raw_transaction_per_s = throughput(move |_| {
        let b = b.clone();
        async move { while !b.reserve_in_transaction("raw-transaction").await {} }
    })
    .await;

    // The least any order needs, with no transaction and no read: the same
    // conditional UpdateItem, then a PutItem of the order. Not a design (a
    // crash between the two takes stock for no order, and the event is
    // missing); it bounds what any createOrder that stores an order can
    // reach against the raw ceiling on this DynamoDB (Local).
    bench.product("untransacted", 100_000_000).await;
    let b = bench.clone();
    let untransacted_per_s = throughput(move |i| {
        let b = b.clone();
        async move {
            b.reserve_bare("untransacted").await;
            b.db.client
                .put_item()
                .table_name(&b.db.tables.orders)
                .set_item(Some(order_item(
                    &format!("untransacted-{i}"),
                    "untransacted",
                )))
                .send()
                .await
                .unwrap();
        }
    })
    .await;

    // The same DynamoDB work without our code, under the same contention:
    // what DynamoDB (Local) itself allows for this transaction shape.
    bench.product("bare-contended", 100_000_000).await;
    let b = bench.clone();
    let bare_per_s = throughput(move |i| {
        let b = b.clone();
        async move { b.bare_until_committed("bare-contended", i).await }
    })
    .await;

    // The same transaction on CLIENTS different products: what DynamoDB
    // (Local) gives transactions that do not contend at all. Operation `i`
    // uses product `i % CLIENTS`, so the CLIENTS operations in flight are
    // (nearly always) on different items.
    for k in 0..CLIENTS {
        bench.product(&format!("spread-{k}"), 100_000_000).await;
    }
    let b = bench.clone();
    let spread_per_s = throughput(move |i| {
        let b = b.clone();
        async move {
            b.bare_until_committed(&format!("spread-{}", i % CLIENTS), i)
                .await
        }
    })
    .await;

    let (h50, h99, b50, b99) = (
        percentile(&handler, 0.5),
        percentile(&handler, 0.99),
        percentile(&bare, 0.5),
        percentile(&bare, 0.99),
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!("| createOrder handler p50 / p99 (ms) | {h50:.2} / {h99:.2} |");
    println!("| bare BatchGetItem + TransactWriteItems p50 / p99 (ms) | {b50:.2} / {b99:.2} |");
    println!(
        "| handler / bare at p50 (p99) | {:.2}x ({:.2}x) |",
        h50 / b50,
        h99 / b99
    );
    println!("| DynamoDB round trips per createOrder | {trips} |");
    println!(
        "| createOrder on one hot product, {CLIENTS} clients (orders/s) | {orders_per_s:.0} |"
    );
    println!(
        "| raw conditional UpdateItem on one item, {CLIENTS} clients (ops/s) | {raw_per_s:.0} |"
    );
    println!(
        "| the same UpdateItem alone in a TransactWriteItems, one item, {CLIENTS} clients (ops/s) | {raw_transaction_per_s:.0} |"
    );
    println!(
        "| UpdateItem then PutItem of the order, no transaction, one item, {CLIENTS} clients (ops/s) | {untransacted_per_s:.0} |"
    );
    println!(
        "| bare BatchGetItem + TransactWriteItems on one item, {CLIENTS} clients (ops/s) | {bare_per_s:.0} |"
    );
    println!(
        "| bare BatchGetItem + TransactWriteItems on {CLIENTS} different items, {CLIENTS} clients (ops/s) | {spread_per_s:.0} |"
    );
    println!(
        "| contention ratio createOrder / raw UpdateItem ceiling | {:.2} |",
        orders_per_s / raw_per_s
    );
    println!(
        "| contention ratio UpdateItem + PutItem (no transaction) / raw UpdateItem ceiling | {:.2} |",
        untransacted_per_s / raw_per_s
    );
    println!(
        "| contention ratio createOrder / bare transaction ceiling | {:.2} |",
        orders_per_s / bare_per_s
    );
    println!(
        "(samples: {SAMPLES} interleaved after {WARMUP} warm-up calls; {CONTENDED_ORDERS} contended operations)"
    );

    // Issue 25: one hot product on 1, 4 and 16 stock items.
    println!();
    println!(
        "| clients | shards N | orders/s | vs N = 1 | retried: conflict / shortfall | hottest item, peak reservations/s | its bound 1.5 × orders/s ÷ N | reservations per item, min–max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Three rounds, each over N = 1, 4, 16 in turn, so that a slow spell of
    // the machine lands on every N alike; the median round per row.
    const ROUNDS: usize = 3;
    for clients in [32, 64] {
        let mut runs: Vec<Vec<ShardedRun>> = (0..3).map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for (i, shards) in [1, 4, 16].into_iter().enumerate() {
                runs[i].push(sharded_run(&bench, clients, shards, round).await);
            }
        }
        let mut medians: Vec<ShardedRun> = runs
            .into_iter()
            .map(|mut row| {
                row.sort_by(|a, b| a.orders_per_s.total_cmp(&b.orders_per_s));
                row.swap_remove(ROUNDS / 2)
            })
            .collect();
        let single = medians[0].orders_per_s;
        for (run, shards) in medians.drain(..).zip([1, 4, 16]) {
            let bound = 1.5 * run.orders_per_s / shards as f64;
            println!(
                "| {clients} | {shards} | {:.0} | {:.2}x | {} / {} | {} | {:.0}{} | {}–{} |",
                run.orders_per_s,
                run.orders_per_s / single,
                run.retries.conflicts,
                run.retries.shortfalls,
                run.hottest_per_s,
                bound,
                if run.hottest_per_s as f64 <= bound {
                    ""
                } else {
                    " (over)"
                },
                run.spread.0,
                run.spread.1,
            );
        }
    }
    println!(
        "({CONTENDED_ORDERS} orders of one unit per run, the median of {ROUNDS} interleaved runs per row; peak over whole seconds of the run, from the items each order recorded it reserved)"
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
