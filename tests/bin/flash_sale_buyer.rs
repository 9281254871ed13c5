//! One buyer process of the flash-sale test (tests/e2e_flash_sale.rs): sends
//! `--orders` createOrder calls for one product through the local stack,
//! `--concurrency` at a time, spread over the tokens given on stdin (one per
//! line, round robin), and prints one JSON line: every status seen and the ids of the
//! orders placed. Several of these race each other, as real clients in
//! different places would, instead of tasks sharing one connection pool.

use std::io::BufRead;

use futures::StreamExt;
use serde_json::{Value, json};

fn arg(name: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| panic!("missing {name}"))
}

#[tokio::main]
async fn main() {
    let (api, product) = (arg("--api"), arg("--product"));
    let orders: usize = arg("--orders").parse().expect("--orders N");
    let concurrency: usize = arg("--concurrency").parse().expect("--concurrency N");
    let tokens: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(!tokens.is_empty(), "no tokens on stdin");
    let http = reqwest::Client::new();
    let outcomes: Vec<(u16, Value, usize)> = futures::stream::iter(0..orders)
        .map(|i| {
            let buyer = i % tokens.len();
            let request = http
                .post(format!("{api}/orders"))
                .bearer_auth(&tokens[buyer])
                .json(&json!({"productId": product, "quantity": 1}));
            async move {
                match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response.json().await.unwrap_or(Value::Null);
                        (status, body, buyer)
                    }
                    // 0: no answer at all (connection refused or reset).
                    Err(e) => (0, json!(e.to_string()), buyer),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut statuses = serde_json::Map::new();
    let mut placed = Vec::new();
    let mut unexpected = Vec::new();
    for (status, body, buyer) in outcomes {
        let seen = statuses.entry(status.to_string()).or_insert(json!(0));
        *seen = json!(seen.as_u64().unwrap_or(0) + 1);
        match status {
            // `buyer`: the line of the token that placed it (its owner
            // pays or cancels it later).
            201 => placed.push(json!({"orderId": body["orderId"], "buyer": buyer})),
            409 if body["error"]["code"] == "INSUFFICIENT_STOCK" => {}
            _ => unexpected.push(json!({"status": status, "body": body})),
        }
    }
    println!(
        "{}",
        json!({"statuses": statuses, "placed": placed, "unexpected": unexpected})
    );
}
