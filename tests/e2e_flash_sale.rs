//! Flash sale through the deployed local stack: buyer processes race
//! createOrder calls for a product with stock 100, round after round, then
//! the winners pay, cancel or let their orders expire. Exactly 100 are sold
//! per round and `stock + reserved + sold` stays 100 through every state.
//! Rounds alternate the product's stock on one item and on 16 shards
//! (issue 25): the counters are summed over the shards, each shard read
//! strongly consistent (units never move between shards here, so the sum
//! of the reads is exact).
//!
//! 5 rounds of 500 calls from 4 processes; `E2E_HEAVY=1` makes it 10 rounds
//! of 1000 from 8. (The emulator runs every concurrent invocation as a
//! process, so in-flight calls stay near 32 on a 2-core machine: the race is
//! in how the calls interleave, not in how many are open at once.)

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Flow, Stack, stack_aws};

const STOCK: i64 = 100;

struct Plan {
    rounds: usize,
    processes: usize,
    calls_per_process: usize,
}

fn plan() -> Plan {
    let heavy = std::env::var("E2E_HEAVY").is_ok_and(|v| v == "1");
    Plan {
        rounds: if heavy { 10 } else { 5 },
        processes: if heavy { 8 } else { 4 },
        calls_per_process: 125,
    }
}

/// A placed order and the token of the user who placed it.
struct Placed {
    order_id: String,
    token: String,
}

/// Races `processes` buyer processes for `product`; the orders they placed.
fn race(stack: &Stack, tokens: &[String], product: &str, plan: &Plan) -> Vec<Placed> {
    // Each process buys as its own share of the users.
    let share = tokens.len() / plan.processes;
    let buyers: Vec<_> = (0..plan.processes)
        .map(|p| {
            let mine = &tokens[p * share..(p + 1) * share];
            let mut child = Command::new(env!("CARGO_BIN_EXE_flash-sale-buyer"))
                .args(["--api", &stack.api_url, "--product", product])
                .args(["--orders", &plan.calls_per_process.to_string()])
                .args(["--concurrency", "8"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the buyer process starts");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(mine.join("\n").as_bytes()).unwrap();
            (child, mine.to_vec())
        })
        .collect();
    let mut placed = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for (child, mine) in buyers {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a buyer process failed");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            report["unexpected"],
            json!([]),
            "only 201 or 409 INSUFFICIENT_STOCK"
        );
        for (status, n) in report["statuses"].as_object().unwrap() {
            *statuses.entry(status.clone()).or_default() += n.as_u64().unwrap();
        }
        for order in report["placed"].as_array().unwrap() {
            placed.push(Placed {
                order_id: order["orderId"].as_str().unwrap().to_owned(),
                token: mine[order["buyer"].as_u64().unwrap() as usize].clone(),
            });
        }
    }
    println!("round on {product}: {statuses:?}");
    placed
}

/// The stored tables a round's counters are read from.
struct Tables {
    products: String,
    stock_shards: String,
}

/// A product's (stock, reserved, sold) as stored, summed over its shards;
/// no counter of any shard below zero.
async fn stored_counters(
    db: &aws_sdk_dynamodb::Client,
    tables: &Tables,
    product: &str,
) -> (i64, i64, i64) {
    let item = db
        .get_item()
        .table_name(&tables.products)
        .key("productId", AttributeValue::S(product.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let count = item
        .get("stockShards")
        .and_then(|v| v.as_n().ok())
        .map_or(1, |n| n.parse::<u32>().unwrap());
    let mut shards = Vec::new();
    for shard in 1..count {
        let key = adapters::stock_shards::shard_key(product, shard);
        let found = db
            .get_item()
            .table_name(&tables.stock_shards)
            .key("shardKey", AttributeValue::S(key))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        shards.extend(found);
    }
    let mut total = (0, 0, 0);
    for item in std::iter::once(&item).chain(&shards) {
        let number = |name: &str| -> i64 {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .map_or(0, |n| n.parse().unwrap())
        };
        let counters = (number("stock"), number("reserved"), number("sold"));
        assert!(
            counters.0 >= 0 && counters.1 >= 0 && counters.2 >= 0,
            "{product}: a shard below zero: {item:?}"
        );
        total = (
            total.0 + counters.0,
            total.1 + counters.1,
            total.2 + counters.2,
        );
    }
    total
}

/// Four in ten winners pay, three cancel, three let their order expire.
/// Payments go first: the test stack's payment window is 20 s, and an
/// order that expires before its payment lands is refunded instead (also
/// conserving every unit, which the final check allows for).
async fn settle(stack: &Stack, product: &str, placed: &[Placed]) {
    let mut plan: Vec<(bool, &Placed)> = placed
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 < 7)
        .map(|(i, order)| (i % 10 < 4, order))
        .collect();
    plan.sort_by_key(|(pays, _)| !pays);
    futures::stream::iter(plan)
        .for_each_concurrent(8, |(pays, order)| async move {
            if pays {
                let (status, payment) = stack
                    .call(
                        Method::POST,
                        "/payments",
                        Some(&order.token),
                        Some(json!({"orderId": order.order_id, "paymentMethod": "CARD"})),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{payment}");
                Flow {
                    stack,
                    token: order.token.clone(),
                    product: product.to_owned(),
                    order_id: order.order_id.clone(),
                    payment,
                }
                .notify("SUCCESS")
                .await;
            } else {
                let path = format!("/orders/{}/cancel", order.order_id);
                let (status, body) = stack
                    .call(Method::POST, &path, Some(&order.token), None)
                    .await;
                // 409 only if the order outlived its window meanwhile.
                assert!(
                    status == StatusCode::OK || body["error"]["code"] == "ORDER_NOT_CANCELLABLE",
                    "{status} {body}"
                );
            }
        })
        .await;
}

/// How many of the orders ended in each status (none may still be pending).
async fn final_statuses(stack: &Stack, placed: &[Placed]) -> BTreeMap<String, i64> {
    let statuses: Vec<String> = futures::stream::iter(placed)
        .map(|order| async move {
            let path = format!("/orders/{}", order.order_id);
            let (status, body) = stack
                .call(Method::GET, &path, Some(&order.token), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["orderStatus"].as_str().unwrap().to_owned()
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn flash_sales_sell_exactly_the_stock_and_conserve_every_unit() {
    let plan = plan();
    let stack = Arc::new(Stack::from_env());
    let tokens: Vec<String> = system_tests::required_env("E2E_FLASH_TOKENS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        tokens.len() >= plan.processes,
        "one user per process at least"
    );
    let (outputs, config) = stack_aws().await;
    let db = aws_sdk_dynamodb::Client::new(&config);
    let table = Tables {
        products: outputs["ProductsTableName"].as_str().unwrap().to_owned(),
        stock_shards: outputs["StockShardsTableName"].as_str().unwrap().to_owned(),
    };
    let table = &table;

    let mut products = Vec::new();
    for round in 1..=plan.rounds {
        let product = stack.new_product("e2e-flash", 990, STOCK).await;
        // Even rounds spread the stock over 16 shards.
        let shards = if round % 2 == 0 { 16 } else { 1 };
        let (status, sharded) = stack
            .call(
                Method::POST,
                &format!("/products/{product}/stock"),
                Some(&stack.admin_token),
                Some(json!({"newStock": STOCK, "stockShards": shards})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sharded}");
        assert_eq!(sharded["stockShards"], shards);
        let started = Instant::now();
        let placed = race(&stack, &tokens, &product, &plan);
        println!(
            "round {round} ({shards} shards): {} calls in {:.1} s, {} orders placed",
            plan.processes * plan.calls_per_process,
            started.elapsed().as_secs_f64(),
            placed.len()
        );
        assert_eq!(placed.len() as i64, STOCK, "exactly the stock is sold");
        assert_eq!(
            stored_counters(&db, table, &product).await,
            (0, STOCK, 0),
            "nothing left, never below zero, all of it reserved"
        );
        settle(&stack, &product, &placed).await;
        products.push((product, placed));
    }

    // Paid orders become sold through the event backbone; unpaid ones
    // expire on the sweeper's minute schedule (20 s payment window here).
    // Then every unit is either sold to a PAID order or back in stock.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (product, placed) in &products {
        let (stock, sold) = loop {
            let (stock, reserved, sold) = stored_counters(&db, table, product).await;
            assert_eq!(
                stock + reserved + sold,
                STOCK,
                "units conserved on {product}"
            );
            if reserved == 0 {
                break (stock, sold);
            }
            assert!(
                Instant::now() < deadline,
                "{product} still has {reserved} reserved (stock {stock}, sold {sold})"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let statuses = final_statuses(&stack, placed).await;
        let paid = statuses.get("PAID").copied().unwrap_or(0);
        assert!(
            statuses
                .keys()
                .all(|s| ["PAID", "CANCELLED", "EXPIRED", "REFUNDED"].contains(&s.as_str())),
            "every order settled: {statuses:?}"
        );
        assert_eq!(
            (sold, stock),
            (paid, STOCK - paid),
            "{product}: {statuses:?}"
        );
        for (status, n) in statuses {
            *totals.entry(status).or_default() += n;
        }
    }
    println!(
        "{} rounds: {STOCK} sold each; then {totals:?}, every unit sold to a PAID order or back in stock",
        plan.rounds
    );
    assert!(
        totals.get("PAID").copied().unwrap_or(0) >= 20 * plan.rounds as i64,
        "most payers paid: {totals:?}"
    );

    // The run's last word on crashes: after everything the suite did under
    // injected faults, the dead-letter queues hold poison only.
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (name, url) in outputs.as_object().unwrap() {
        if !name.ends_with("DeadLetterQueueUrl") {
            continue;
        }
        let bodies = system_tests::e2e::drain_visible(&sqs, url.as_str().unwrap()).await;
        let events = bodies
            .iter()
            .filter(|b| serde_json::from_str::<domain::events::Envelope>(b).is_ok())
            .count();
        println!("{name}: {} messages, {events} of them events", bodies.len());
        assert_eq!(
            events, 0,
            "a valid event was dead-lettered in {name}: {bodies:?}"
        );
    }
}
