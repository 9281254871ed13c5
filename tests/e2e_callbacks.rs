//! Provider callbacks under chaos through the deployed local stack: each of
//! 50 orders gets its genuine success callback 10 times, shuffled with a
//! stale, a tampered and a forged one per order and sent 16 at a time.
//! Every order is paid exactly once: one PaymentSucceeded and one OrderPaid
//! event, one rebate entry, one message per event (order placed, payment
//! received, rebate credited). Every bad callback is refused with 401.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use system_tests::e2e::{REBATE_CATEGORY, Stack, stack_aws, unique_id};

const ORDERS: usize = 50;
const GENUINE_COPIES: usize = 10;
const WAVE: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Genuine,
    /// Signed 10 minutes ago: outside the accepted window.
    Stale,
    /// Signed, then the amount changed.
    Tampered,
    /// Signed with a secret that is not the provider's.
    Forged,
}

struct Callback {
    kind: Kind,
    body: String,
    signature: String,
}

fn callbacks_for(payment: &Value, secret: &str) -> Vec<Callback> {
    let body = json!({
        "paymentId": payment["paymentId"], "orderId": payment["orderId"],
        "paymentStatus": "SUCCESS", "amount": payment["amount"], "currency": "CNY",
        "providerTransactionId": unique_id("tx"),
    });
    let raw = body.to_string();
    let now = domain::clock::now().unix_timestamp();
    let sign = |secret: &str, at: i64, raw: &str| {
        adapters::payments::sandbox::sign(secret.as_bytes(), at, raw.as_bytes())
    };
    let mut tampered = body.clone();
    tampered["amount"] = json!(1);
    let mut callbacks: Vec<Callback> = (0..GENUINE_COPIES)
        .map(|_| Callback {
            kind: Kind::Genuine,
            body: raw.clone(),
            signature: sign(secret, now, &raw),
        })
        .collect();
    callbacks.push(Callback {
        kind: Kind::Stale,
        body: raw.clone(),
        signature: sign(secret, now - 600, &raw),
    });
    callbacks.push(Callback {
        kind: Kind::Tampered,
        body: tampered.to_string(),
        signature: sign(secret, now, &raw),
    });
    callbacks.push(Callback {
        kind: Kind::Forged,
        body: raw.clone(),
        signature: sign("not-the-provider-secret", now, &raw),
    });
    callbacks
}

/// The shuffle's seed, printed so that a failing order can be replayed
/// with `E2E_CHAOS_SEED`.
fn seed() -> u64 {
    let seed = std::env::var("E2E_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| domain::clock::now().unix_timestamp_nanos() as u64 | 1);
    println!("shuffle seed {seed}");
    seed
}

/// Fisher–Yates with a xorshift generator.
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        items.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

/// How many events of each (type, order id) the events table holds.
async fn events_per_order() -> BTreeMap<(String, String), usize> {
    let (outputs, config) = stack_aws().await;
    let db = aws_sdk_dynamodb::Client::new(&config);
    let items: Vec<_> = db
        .scan()
        .table_name(outputs["EventsTableName"].as_str().unwrap())
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut counts = BTreeMap::new();
    for item in items {
        let envelope: Value = serde_json::from_str(item["envelope"].as_s().unwrap()).unwrap();
        let event_type = envelope["type"].as_str().unwrap_or("").to_owned();
        let order = envelope["data"]["orderId"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *counts.entry((event_type, order)).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn fifty_orders_under_duplicate_stale_tampered_and_forged_callbacks_are_paid_once() {
    let stack = Stack::from_env();
    stack.ensure_rebate_rules().await;
    let secret = system_tests::required_env("E2E_PAYMENT_SECRET");
    let users: Vec<String> = system_tests::required_env("E2E_CHAOS_TOKENS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let product = stack
        .new_product_in(REBATE_CATEGORY, "e2e-chaos", 1000, ORDERS as i64)
        .await;
    // 10 orders per user: within every per-user limit, and the monthly
    // rebate cap (2500) stays above their 10 × 100. In waves of 10 orders,
    // so that each order's callbacks come within the test stack's 20 s
    // payment window.
    let mut seed = seed();
    let http = reqwest::Client::new();
    let mut flows = Vec::new();
    let mut answers: Vec<(Kind, StatusCode, Value)> = Vec::new();
    for wave in (0..ORDERS).collect::<Vec<_>>().chunks(WAVE) {
        let wave_flows: Vec<_> = futures::stream::iter(wave.iter().copied())
            .map(|i| stack.order_with_payment(&product, 1, &users[i % users.len()]))
            .buffered(8)
            .collect()
            .await;
        let mut callbacks: Vec<Callback> = wave_flows
            .iter()
            .flat_map(|flow| callbacks_for(&flow.payment, &secret))
            .collect();
        shuffle(&mut callbacks, &mut seed);
        let wave_answers: Vec<(Kind, StatusCode, Value)> = futures::stream::iter(callbacks)
            .map(|callback| {
                let request = http
                    .post(format!("{}/payments/notify", stack.api_url))
                    .header("content-type", "application/json")
                    .header("x-payment-signature", &callback.signature)
                    .body(callback.body);
                async move {
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    (
                        callback.kind,
                        status,
                        response.json().await.unwrap_or(Value::Null),
                    )
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        flows.extend(wave_flows);
        answers.extend(wave_answers);
    }
    let mut tally: BTreeMap<(Kind, u16), usize> = BTreeMap::new();
    for (kind, status, body) in &answers {
        *tally.entry((*kind, status.as_u16())).or_default() += 1;
        if *kind == Kind::Genuine {
            assert_eq!(*status, StatusCode::OK, "{body}");
        } else {
            assert_eq!(*status, StatusCode::UNAUTHORIZED, "{kind:?}: {body}");
            assert!(body["error"]["code"].is_string(), "{body}");
        }
    }
    println!("callbacks (kind, status) → count: {tally:?}");
    let applied = answers
        .iter()
        .filter(|(kind, _, body)| *kind == Kind::Genuine && body["applied"] == true)
        .count();
    assert_eq!(
        applied, ORDERS,
        "one applied callback per order, the rest duplicates"
    );

    for flow in &flows {
        flow.wait_for_order("PAID", Duration::from_secs(60)).await;
    }
    // Every order's rebate and messages, then a pause for any late double.
    let deadline = Instant::now() + Duration::from_secs(90);
    for flow in &flows {
        loop {
            let statement = stack.rebate_statement(&flow.token).await;
            let inbox = stack.inbox(&flow.token).await;
            let titles = system_tests::e2e::titles_for(&inbox, &flow.order_id);
            if system_tests::e2e::entries_of(&statement, &flow.order_id).len() == 1
                // Order placed, payment received, rebate credited.
                && titles.len() == 3
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: rebate {statement}, messages {titles:?}",
                flow.order_id
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let events = events_per_order().await;
    let count =
        |event_type: &str, id: &str| events.get(&(event_type.to_owned(), id.to_owned())).copied();
    for flow in &flows {
        let id = &flow.order_id;
        assert_eq!(
            count("PaymentSucceeded", id),
            Some(1),
            "PaymentSucceeded events of {id}"
        );
        assert_eq!(count("OrderPaid", id), Some(1), "OrderPaid events of {id}");
        let statement = stack.rebate_statement(&flow.token).await;
        let entries = system_tests::e2e::entries_of(&statement, id);
        assert_eq!(entries.len(), 1, "rebate entries of {id}: {entries:?}");
        assert_eq!(entries[0]["amount"], 100, "10% of 1000: {entries:?}");
        let inbox = stack.inbox(&flow.token).await;
        let titles = system_tests::e2e::titles_for(&inbox, id);
        assert!(
            titles.values().all(|n| *n == 1),
            "one message per event for {id}: {titles:?}"
        );
    }
    assert_eq!(
        stack.counters(&product).await,
        (0, 0),
        "all 50 sold, none reserved"
    );
}
