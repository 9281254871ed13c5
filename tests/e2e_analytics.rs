//! Sales analytics through the deployed local stack: after a mixed run of
//! paid, refunded and cancelled orders, today's stats equal a recomputation
//! from the orders table, and the rollup function (invoked as the schedule
//! would, twice) serves the same figures from its report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Stack, stack_aws};

/// (orders, units, revenue) of today's paid orders, less what refunds took
/// back, overall and per product, from the orders table. Everything here
/// happens today: an order refunded whole nets to nothing, one refunded in
/// part counts its lines not refunded, and an order (or a product's line)
/// counts while any of its units is not refunded.
async fn recompute(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    today: &str,
) -> ((i64, i64, i64), BTreeMap<String, (i64, i64)>) {
    use domain::orders::OrderStatus;
    let (mut totals, mut products) = ((0, 0, 0), BTreeMap::new());
    let mut start = None;
    loop {
        let out = dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in out.items() {
            let order: domain::orders::Order = serde_dynamo::from_item(item.clone()).unwrap();
            let sold = matches!(
                order.order_status,
                OrderStatus::Paid
                    | OrderStatus::Shipped
                    | OrderStatus::Completed
                    | OrderStatus::PartiallyRefunded
            );
            if !sold || order.currency != "CNY" || !order.updated_at.starts_with(today) {
                continue;
            }
            totals.0 += 1;
            totals.2 += order.order_amount - order.refunded_amount;
            for line in &order.items {
                let kept = line.quantity
                    - order
                        .refunded_units
                        .get(&line.product_id)
                        .copied()
                        .unwrap_or(0);
                totals.1 += kept;
                let entry = products.entry(line.product_id.clone()).or_insert((0, 0));
                entry.0 += kept;
                entry.1 += kept * line.unit_price;
            }
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return (totals, products);
        }
    }
}

fn figures(v: &Value) -> (i64, i64, i64) {
    (
        v["orders"].as_i64().unwrap(),
        v["units"].as_i64().unwrap(),
        v["revenue"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn stats_equal_a_recomputation_from_the_orders_table_and_survive_the_rollup() {
    let stack = Stack::from_env();
    let token = &stack.user_token;
    // Prices high enough to lead the top-10 list.
    let big = stack.new_product("e2e-stats-big", 50_000_000, 20).await;
    let small = stack.new_product("e2e-stats-small", 30_000_000, 20).await;

    let mut flows = Vec::new();
    for (product, quantity) in [(&big, 2), (&small, 1), (&big, 1), (&small, 3)] {
        flows.push(stack.order_with_payment(product, quantity, token).await);
    }
    for flow in &flows {
        flow.notify("SUCCESS").await;
    }
    for flow in &flows {
        flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    }
    // The last one is refunded; another order is cancelled unpaid.
    let (status, _) = stack
        .call(
            Method::POST,
            &format!("/orders/{}/cancel", flows[3].order_id),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    flows[3]
        .wait_for_order("REFUNDED", Duration::from_secs(30))
        .await;
    let unpaid = stack.new_order(&big, 1).await;
    let (status, _) = stack
        .call(
            Method::POST,
            &format!("/orders/{}/cancel", unpaid["orderId"].as_str().unwrap()),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (outputs, config) = stack_aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let orders_table = outputs["OrdersTableName"].as_str().unwrap();
    let today = &domain::clock::now_rfc3339()[..10];
    let path = format!("/admin/stats/sales?from={today}&to={today}");

    // The consumers settle asynchronously: poll until the stats agree.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let (totals, products) = recompute(&dynamodb, orders_table, today).await;
        let (status, stats) = stack
            .call(Method::GET, &path, Some(&stack.admin_token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let top: BTreeMap<String, (i64, i64)> = stats["topProducts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["productId"].as_str().unwrap().to_owned(),
                    (p["units"].as_i64().unwrap(), p["revenue"].as_i64().unwrap()),
                )
            })
            .collect();
        let ours_agree = [&big, &small]
            .iter()
            .all(|p| top.get(*p) == products.get(*p));
        if figures(&stats["days"][0]) == totals && ours_agree {
            assert_eq!(products[&big], (3, 150_000_000));
            assert_eq!(products[&small], (1, 30_000_000), "the refund subtracted");
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "stats {stats} vs recomputed {totals:?} {products:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(stats["days"][0]["fromReport"], false);

    // The daily rollup, invoked twice for today: the same report, and the
    // route now answers from it with the same figures (unless an order of
    // another test landed in between, which drops the report).
    let lambda = aws_sdk_lambda::Client::new(&config);
    let function = outputs["RollUpSalesFunctionName"].as_str().unwrap();
    let mut reports = Vec::new();
    for _ in 0..2 {
        let out = lambda
            .invoke()
            .function_name(function)
            .payload(aws_smithy_types::Blob::new(
                json!({"date": today}).to_string(),
            ))
            .send()
            .await
            .unwrap();
        assert!(out.function_error().is_none(), "{out:?}");
        let report: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
        assert_eq!(report["date"], *today);
        reports.push(report["reports"].clone());
    }
    assert_eq!(reports[0], reports[1], "a second rollup changes nothing");
    let (_, rolled) = stack
        .call(Method::GET, &path, Some(&stack.admin_token), None)
        .await;
    assert_eq!(rolled["days"][0]["fromReport"], true, "{rolled}");
    assert_eq!(figures(&rolled), figures(&stats));
    assert_eq!(rolled["topProducts"], stats["topProducts"]);
}

#[tokio::test]
async fn only_admins_read_sales_stats() {
    let stack = Stack::from_env();
    let (status, _) = stack
        .call(
            Method::GET,
            "/admin/stats/sales?from=2026-01-01&to=2026-01-31",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = stack
        .call(
            Method::GET,
            "/admin/stats/sales?from=2025-01-01&to=2026-06-30",
            Some(&stack.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
