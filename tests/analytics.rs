//! Sales analytics in-process against DynamoDB Local: aggregates counted
//! once per event, refunds subtracting, the rollup report agreeing with the
//! aggregates (and idempotent), and the stats route's checks.

use adapters::sales::Sales;
use analytics::AnalyticsConsumer;
use domain::events::{Envelope, EventType};
use domain::orders::{Order, OrderLine, OrderStatus};
use domain::sales::parse_date;
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};

fn order(lines: &[(&str, i64, i64)]) -> Order {
    let items: Vec<OrderLine> = lines
        .iter()
        .map(|(product, quantity, price)| OrderLine {
            product_id: (*product).to_owned(),
            name: format!("{product} name"),
            category: "test".into(),
            quantity: *quantity,
            unit_price: *price,
            line_amount: quantity * price,
        })
        .collect();
    Order {
        order_id: domain::ids::new_id(),
        user_id: "u".into(),
        order_amount: items.iter().map(|l| l.line_amount).sum(),
        items,
        currency: "CNY".into(),
        order_status: OrderStatus::Paid,
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
    }
}

fn event(event_type: EventType, order: &Order, at: &str) -> String {
    serde_json::to_string(&Envelope::new(event_type, "c", at, order).unwrap()).unwrap()
}

async fn stats(sales: &Sales, query: &[(&str, &str)], admin: bool) -> (u16, Value) {
    let mut req = ApiRequest::get("/admin/stats/sales");
    for (k, v) in query {
        req = req.query(k, v);
    }
    let req = if admin {
        req.as_admin("boss")
    } else {
        req.as_user("u")
    };
    parts(&http_edge::http::into_response(
        get_sales_stats::handle(sales, req.build()).await,
    ))
}

#[tokio::test]
async fn paid_and_refunded_orders_add_up_once_per_event_and_roll_up() {
    let db = TestDb::new().await;
    let sales = Sales::new(db.client.clone(), db.tables.clone());
    let consumer = AnalyticsConsumer {
        sales: sales.clone(),
        markers_table: db.tables.processed_events.clone(),
    };
    let a = order(&[("tea", 2, 1000), ("cup", 1, 500)]);
    let b = order(&[("tea", 1, 1000)]);
    let c = order(&[("kettle", 1, 9000)]);
    let day1 = "2026-11-20T10:00:00.000Z";
    let day2 = "2026-11-21T23:59:59.999Z";
    let mut messages = Vec::new();
    for body in [
        event(EventType::OrderPaid, &a, day1),
        event(EventType::OrderPaid, &b, day1),
        event(EventType::OrderPaid, &c, day1),
        event(EventType::OrderRefunded, &c, day2),
        event(EventType::OrderCancelled, &a, day2),
    ] {
        // Every event delivered three times.
        for i in 0..3 {
            messages.push(message(&format!("m{}-{i}", messages.len()), &body));
        }
    }
    messages.push(message("poison", "{"));
    let response = consumer.handle_batch(batch(messages)).await;
    assert_eq!(failed_ids(&response), ["poison"]);

    let (status, body) = stats(
        &sales,
        &[("from", "2026-11-20"), ("to", "2026-11-22")],
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["days"][0]["revenue"], 2500 + 1000 + 9000);
    assert_eq!(body["days"][0]["orders"], 3);
    assert_eq!(body["days"][0]["units"], 5);
    assert_eq!(
        body["days"][1]["revenue"], -9000,
        "the refund subtracts on its day"
    );
    assert_eq!(body["days"][2]["revenue"], 0);
    assert_eq!(body["revenue"], 3500);
    assert_eq!(body["orders"], 2);
    let top: Vec<(Value, Value)> = body["topProducts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["productId"].clone(), p["revenue"].clone()))
        .collect();
    assert_eq!(
        top,
        [
            (json!("tea"), json!(3000)),
            (json!("cup"), json!(500)),
            (json!("kettle"), json!(0))
        ]
    );

    // The rollup gives the same figures, from one item, twice over.
    let day = parse_date("2026-11-20").unwrap();
    let first = roll_up_sales::roll_up(&sales, roll_up_sales::RollupRequest { date: Some(day) })
        .await
        .unwrap();
    let second = sales.roll_up(day, "CNY").await.unwrap();
    assert_eq!(first.reports, vec![second]);
    let (_, rolled) = stats(
        &sales,
        &[("from", "2026-11-20"), ("to", "2026-11-22")],
        true,
    )
    .await;
    assert_eq!(rolled["days"][0]["fromReport"], true);
    for field in ["revenue", "orders", "units", "topProducts"] {
        assert_eq!(rolled[field], body[field], "{field}");
    }
    // A late event for a rolled-up day drops the report with the change.
    let late = order(&[("cup", 1, 500)]);
    assert!(
        failed_ids(
            &consumer
                .handle_batch(batch(vec![message(
                    "late",
                    &event(EventType::OrderPaid, &late, day1)
                )]))
                .await
        )
        .is_empty()
    );
    let (_, after) = stats(
        &sales,
        &[("from", "2026-11-20"), ("to", "2026-11-20")],
        true,
    )
    .await;
    assert_eq!(after["days"][0]["fromReport"], false);
    assert_eq!(after["revenue"], 2500 + 1000 + 9000 + 500);
}

#[tokio::test]
async fn the_stats_route_is_admin_only_and_checks_its_range() {
    let db = TestDb::new().await;
    let sales = Sales::new(db.client.clone(), db.tables.clone());
    assert_eq!(
        stats(
            &sales,
            &[("from", "2026-11-01"), ("to", "2026-11-02")],
            false
        )
        .await
        .0,
        403
    );
    for (query, field) in [
        (vec![("to", "2026-11-02")], "from"),
        (vec![("from", "2026-11-01")], "to"),
        (vec![("from", "2026-13-01"), ("to", "2026-11-02")], "from"),
        (vec![("from", "2026-11-03"), ("to", "2026-11-02")], "to"),
        (vec![("from", "2025-01-01"), ("to", "2026-01-02")], "366"),
        (
            vec![
                ("from", "2026-11-01"),
                ("to", "2026-11-02"),
                ("currency", "cny"),
            ],
            "currency",
        ),
    ] {
        let (status, error) = stats(&sales, &query, true).await;
        assert_eq!(status, 400, "{query:?}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    let (status, year) = stats(
        &sales,
        &[("from", "2025-01-01"), ("to", "2026-01-01")],
        true,
    )
    .await;
    assert_eq!(status, 200, "366 days are allowed: {year}");
    assert_eq!(year["days"].as_array().unwrap().len(), 366);
    assert_eq!(year["revenue"], 0);

    // The calendar's edges (issue 27.4): the last day there is answers, it
    // does not panic stepping past it; years outside 1970..=9999 are 400.
    let (status, last) = stats(
        &sales,
        &[("from", "9999-12-30"), ("to", "9999-12-31")],
        true,
    )
    .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["days"].as_array().unwrap().len(), 2);
    for bad in ["10000-01-01", "-0001-01-01", "1969-12-31"] {
        let (status, error) = stats(&sales, &[("from", bad), ("to", "2026-01-01")], true).await;
        assert_eq!(status, 400, "{bad}: {error}");
    }
}

/// An `OrderLinesRefunded` event for `order` after `lines` were refunded.
fn lines_refunded(order: &mut Order, lines: &[(&str, i64)], at: &str) -> String {
    let data = system_tests::refunds::lines_refunded(order, &domain::ids::new_id(), lines, at);
    serde_json::to_string(&Envelope::new(EventType::OrderLinesRefunded, "c", at, &data).unwrap())
        .unwrap()
}

#[tokio::test]
async fn a_refunded_line_subtracts_only_itself_on_its_day() {
    let db = TestDb::new().await;
    let sales = Sales::new(db.client.clone(), db.tables.clone());
    let consumer = AnalyticsConsumer {
        sales: sales.clone(),
        markers_table: db.tables.processed_events.clone(),
    };
    let mut a = order(&[("tea", 2, 1000), ("cup", 1, 500)]);
    let paid = event(EventType::OrderPaid, &a, "2026-11-20T10:00:00.000Z");
    let one_tea = lines_refunded(&mut a, &[("tea", 1)], "2026-11-21T10:00:00.000Z");
    let the_rest = lines_refunded(
        &mut a,
        &[("tea", 1), ("cup", 1)],
        "2026-11-22T10:00:00.000Z",
    );
    let range = [("from", "2026-11-20"), ("to", "2026-11-22")];
    let mut messages = Vec::new();
    for body in [&paid, &one_tea] {
        for i in 0..2 {
            messages.push(message(&format!("m{}-{i}", messages.len()), body));
        }
    }
    assert!(failed_ids(&consumer.handle_batch(batch(messages)).await).is_empty());
    let (_, body) = stats(&sales, &range, true).await;
    // One tea back on the 21st: the order and both products still count.
    assert_eq!(body["days"][1]["revenue"], -1000);
    assert_eq!(body["days"][1]["units"], -1);
    assert_eq!(body["days"][1]["orders"], 0);
    assert_eq!(
        (
            body["revenue"].as_i64(),
            body["units"].as_i64(),
            body["orders"].as_i64()
        ),
        (Some(1500), Some(2), Some(1))
    );
    let tea = |body: &Value| {
        body["topProducts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["productId"] == "tea")
            .map(|p| {
                (
                    p["revenue"].as_i64().unwrap(),
                    p["units"].as_i64().unwrap(),
                    p["orders"].as_i64().unwrap(),
                )
            })
            .unwrap()
    };
    assert_eq!(tea(&body), (1000, 1, 1));

    // The rest on the 22nd: nothing of the order is left, nor of either
    // product, as a recomputation from the order would say.
    let response = consumer
        .handle_batch(batch(vec![
            message("r1", &the_rest),
            message("r2", &the_rest),
        ]))
        .await;
    assert!(failed_ids(&response).is_empty());
    let (_, body) = stats(&sales, &range, true).await;
    assert_eq!(body["days"][2]["revenue"], -1500);
    assert_eq!(body["days"][2]["orders"], -1);
    assert_eq!(
        (
            body["revenue"].as_i64(),
            body["units"].as_i64(),
            body["orders"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(tea(&body), (0, 0, 0));
}
