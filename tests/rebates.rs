//! Rebates in-process against DynamoDB Local: the rules routes, the ledger
//! consumer under redelivery and concurrency, the monthly cap, reversal,
//! clawback, release, and balances that always equal their ledger.

use std::time::Duration;

use adapters::rebates::Rebates;
use aws_sdk_dynamodb::types::AttributeValue;
use calculate_rebate::RebateConsumer;
use domain::events::{Envelope, EventType};
use domain::orders::{Order, OrderLine, OrderStatus};
use domain::rebates::RebateRules;
use domain::rebates::{EntryKind, EntryStatus, LedgerEntry, ReleaseReport};
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};

const PAID_AT: &str = "2026-11-20T10:00:00.000Z";

struct Fixture {
    db: TestDb,
    consumer: RebateConsumer,
}

/// Rules: 10% on "food", 1% on anything else, at most `month_cap` per user
/// per month.
fn rules(month_cap: Option<i64>) -> RebateRules {
    serde_json::from_value(json!({
        "defaultRateBps": 100,
        "categoryRatesBps": {"food": 1000},
        "maxPerUserPerMonth": month_cap,
    }))
    .unwrap()
}

/// `after_sales`: the window after completion before a rebate is released.
async fn fixture(after_sales: Duration, month_cap: Option<i64>) -> Fixture {
    let db = TestDb::new().await;
    let rebates = Rebates::new(db.client.clone(), db.tables.clone());
    let consumer = RebateConsumer {
        rebates,
        markers_table: db.tables.processed_events.clone(),
        after_sales: time::Duration::try_from(after_sales).unwrap(),
    };
    let f = Fixture { db, consumer };
    f.set_rules(rules(month_cap)).await;
    f
}

/// A paid order of `user` with one line per (category, amount).
fn paid_order(user: &str, lines: &[(&str, i64)]) -> Order {
    let items: Vec<OrderLine> = lines
        .iter()
        .enumerate()
        .map(|(i, (category, amount))| OrderLine {
            product_id: format!("p{i}"),
            name: format!("product {i}"),
            category: (*category).to_owned(),
            quantity: 1,
            unit_price: *amount,
            line_amount: *amount,
        })
        .collect();
    Order {
        order_id: domain::ids::new_id(),
        user_id: user.to_owned(),
        order_amount: items.iter().map(|l| l.line_amount).sum(),
        items,
        currency: "CNY".into(),
        order_status: OrderStatus::Paid,
        created_at: PAID_AT.into(),
        updated_at: PAID_AT.into(),
        expires_at: PAID_AT.into(),
        active_payment_id: None,
        paid_payment_id: Some("pay".into()),
        shipment: None,
        completed_at: None,
        refund_claims: Default::default(),
        refunded_units: Default::default(),
        refunded_amount: 0,
        stock_taken: Default::default(),
    }
}

fn event(event_type: EventType, order: &Order) -> String {
    let status = match event_type {
        EventType::OrderRefunded => OrderStatus::Refunded,
        EventType::OrderCancelled => OrderStatus::Cancelled,
        EventType::OrderCompleted => OrderStatus::Completed,
        _ => OrderStatus::Paid,
    };
    let completed_at = match event_type {
        // Received now: its after-sales window starts now.
        EventType::OrderCompleted => Some(domain::clock::now_rfc3339()),
        _ => order.completed_at.clone(),
    };
    let order = Order {
        order_status: status,
        completed_at,
        ..order.clone()
    };
    serde_json::to_string(&Envelope::new(event_type, "corr", PAID_AT, &order).unwrap()).unwrap()
}

impl Fixture {
    /// Replaces the rules as an admin would, as if long before [`PAID_AT`]:
    /// credits use the rules in force when the order was paid, so every
    /// version is dated (version N at minute N of 2026-01-01).
    async fn set_rules(&self, rules: RebateRules) {
        self.consumer
            .rebates
            .replace_rules(rules, "admin")
            .await
            .unwrap();
        self.date_rules(|version| format!("2026-01-01T00:{version:02}:00.000Z"))
            .await;
    }

    /// Sets every stored rules version's `updatedAt` to `when(version)`.
    async fn date_rules(&self, when: impl Fn(i64) -> String) {
        let table = &self.db.tables.rebate_rules;
        let items = self
            .db
            .client
            .scan()
            .table_name(table)
            .send()
            .await
            .unwrap();
        for item in items.items() {
            let version: i64 = item["version"].as_n().unwrap().parse().unwrap();
            self.db
                .client
                .update_item()
                .table_name(table)
                .key("rulesId", item["rulesId"].clone())
                .update_expression("SET updatedAt = :t")
                .expression_attribute_values(":t", AttributeValue::S(when(version)))
                .send()
                .await
                .unwrap();
        }
    }

    async fn deliver(&self, body: &str) {
        let response = self
            .consumer
            .handle_batch(batch(vec![message("m", body)]))
            .await;
        assert!(failed_ids(&response).is_empty(), "{body}");
    }

    async fn statement(&self, user: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut req = ApiRequest::get("/me/rebates").as_user(user);
        for (name, value) in query {
            req = req.query(name, value);
        }
        parts(&http_edge::http::into_response(
            get_rebates::handle(&self.consumer.rebates, req.build()).await,
        ))
    }

    async fn entries(&self, user: &str) -> Vec<LedgerEntry> {
        let (entries, next) = self
            .consumer
            .rebates
            .entries(user, 1000, None)
            .await
            .unwrap();
        assert!(next.is_none());
        entries
    }

    /// The balance equals the sums of the ledger, whatever happened.
    async fn assert_balance_matches_ledger(&self, user: &str) -> (i64, i64) {
        let entries = self.entries(user).await;
        let sum = |status| {
            entries
                .iter()
                .filter(|e| e.status == status)
                .map(|e| e.amount)
                .sum::<i64>()
        };
        let balances = self.consumer.rebates.balances(user).await.unwrap();
        let balance = balances.iter().find(|b| b.currency == "CNY").unwrap();
        assert_eq!(
            (balance.pending, balance.available),
            (sum(EntryStatus::Pending), sum(EntryStatus::Available)),
            "balance drifted from the ledger: {entries:#?}"
        );
        (balance.pending, balance.available)
    }
}

#[tokio::test]
async fn rules_are_admin_only_validated_and_versioned() {
    let db = TestDb::new().await;
    let rebates = Rebates::new(db.client.clone(), db.tables.clone());
    let get = |user_is_admin: bool| {
        let req = ApiRequest::get("/admin/rebate-rules");
        if user_is_admin {
            req.as_admin("boss")
        } else {
            req.as_user("u1")
        }
        .build()
    };
    let put = |body: Value, admin: bool| {
        let req = ApiRequest::put("/admin/rebate-rules").json(body);
        if admin {
            req.as_admin("boss")
        } else {
            req.as_user("u1")
        }
        .build()
    };
    let call_get = |req| async {
        parts(&http_edge::http::into_response(
            get_rebate_rules::handle(&rebates, req).await,
        ))
    };
    let call_put = |req| async {
        parts(&http_edge::http::into_response(
            put_rebate_rules::handle(&rebates, req).await,
        ))
    };

    let (status, body) = call_get(get(true)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("REBATE_RULES_NOT_SET"))
    );
    assert_eq!(call_get(get(false)).await.0, 403);
    assert_eq!(
        call_put(put(json!({"defaultRateBps": 100}), false)).await.0,
        403
    );

    let (status, stored) = call_put(put(json!({"defaultRateBps": 100, "version": 77}), true)).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["version"], 1, "the server numbers versions");
    let (status, stored) = call_put(put(
        json!({"defaultRateBps": 0, "categoryRatesBps": {"food": 300}}),
        true,
    ))
    .await;
    assert_eq!((status, stored["version"].as_u64()), (200, Some(2)));
    let (status, current) = call_get(get(true)).await;
    assert_eq!(status, 200);
    assert_eq!(current["categoryRatesBps"]["food"], 300);
    assert_eq!(current["defaultRateBps"], 0);

    for (body, field) in [
        (
            json!({"defaultRateBps": 0, "categoryRatesBps": {"food": 10001}}),
            "categoryRatesBps.food",
        ),
        (json!({"defaultRatBps": 1}), "defaultRatBps"),
        // `{}` would switch rebates off by accident: that takes an explicit 0.
        (json!({}), "defaultRateBps"),
        (
            json!({"defaultRateBps": 0, "maxPerOrder": -1}),
            "maxPerOrder",
        ),
        (json!({"defaultRateBps": 0, "currency": "yuan"}), "currency"),
        (
            json!({"defaultRateBps": 0, "campaigns": [{"campaignId": "c", "kind": "EXTRA", "rateBps": 1,
                "startsAt": "2026-11-12T00:00:00Z", "endsAt": "2026-11-11T00:00:00Z"}]}),
            "campaigns[0].endsAt",
        ),
        (
            json!({"defaultRateBps": 0, "minOrderAmount": "10"}),
            "minOrderAmount",
        ),
    ] {
        let (status, error) = call_put(put(body.clone(), true)).await;
        assert_eq!(status, 400, "{body} -> {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {error} should name {field}"
        );
    }
    assert_eq!(
        call_get(get(true)).await.1["version"],
        2,
        "bad rules change nothing"
    );
}

#[tokio::test]
async fn a_paid_order_is_credited_once_however_often_its_event_arrives() {
    let f = fixture(Duration::from_secs(3600), None).await;
    let order = paid_order("u1", &[("food", 1999), ("toys", 5000)]);
    let body = event(EventType::OrderPaid, &order);
    // 10 deliveries: 5 at once, then 5 one after another; plus a second
    // OrderPaid event (another eventId) for the same order.
    let response = f
        .consumer
        .handle_batch(batch(
            (0..5).map(|i| message(&format!("m{i}"), &body)).collect(),
        ))
        .await;
    assert!(failed_ids(&response).is_empty());
    tokio::join!(
        f.deliver(&body),
        f.deliver(&body),
        f.deliver(&body),
        f.deliver(&body),
        f.deliver(&body)
    );
    f.deliver(&event(EventType::OrderPaid, &order)).await;

    let entries = f.entries("u1").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    // 10% of 1999 rounds down to 199; 1% of 5000 is 50.
    assert_eq!(
        (entry.amount, entry.status, entry.kind),
        (249, EntryStatus::Pending, EntryKind::Credit)
    );
    assert_eq!(entry.rules_version, 1);
    assert_eq!(
        entry.lines.iter().map(|l| l.amount).collect::<Vec<_>>(),
        [199, 50]
    );
    assert_eq!(f.assert_balance_matches_ledger("u1").await, (249, 0));
    assert_eq!(f.db.events_of_type("RebateCredited").await.len(), 1);
}

#[tokio::test]
async fn the_monthly_cap_holds_under_concurrent_credits() {
    // 20 orders each earning 100, racing; the cap is 1050.
    let f = fixture(Duration::from_secs(3600), Some(1050)).await;
    let consumer = std::sync::Arc::new(f.consumer);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let consumer = consumer.clone();
        let body = event(
            EventType::OrderPaid,
            &paid_order("capped", &[("food", 1000)]),
        );
        tasks.push(tokio::spawn(async move {
            let response = consumer
                .handle_batch(batch(vec![message("m", &body)]))
                .await;
            failed_ids(&response)
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_empty());
    }
    let f = Fixture {
        db: f.db,
        consumer: std::sync::Arc::into_inner(consumer).unwrap(),
    };
    let entries = f.entries("capped").await;
    let total: i64 = entries.iter().map(|e| e.amount).sum();
    assert_eq!(total, 1050, "exactly the cap is credited: {entries:#?}");
    assert_eq!(entries.len(), 11, "10 full credits and one capped at 50");
    assert_eq!(entries.iter().filter(|e| e.capped_by.is_some()).count(), 1);
    assert_eq!(f.assert_balance_matches_ledger("capped").await, (1050, 0));

    // A refund frees its share of the cap for the next order.
    let refunded = entries.iter().find(|e| e.amount == 100).unwrap();
    let mut order = paid_order("capped", &[("food", 1000)]);
    order.order_id = refunded.order_id.clone();
    f.deliver(&event(EventType::OrderRefunded, &order)).await;
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("capped", &[("food", 5000)]),
    ))
    .await;
    assert_eq!(f.assert_balance_matches_ledger("capped").await, (1050, 0));
}

#[tokio::test]
async fn refunds_reverse_pending_rebates_and_claw_back_available_ones() {
    let f = fixture(Duration::ZERO, None).await;
    let pending = paid_order("u2", &[("food", 3000)]);
    f.deliver(&event(EventType::OrderPaid, &pending)).await;
    let refund = event(EventType::OrderRefunded, &pending);
    for _ in 0..3 {
        f.deliver(&refund).await;
    }
    let entries = f.entries("u2").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].status, entries[0].amount),
        (EntryStatus::Reversed, 300)
    );
    assert_eq!(f.assert_balance_matches_ledger("u2").await, (0, 0));

    // After-sales window 0: once completed, the release sweep makes the
    // next one available.
    let released = paid_order("u2", &[("food", 5000)]);
    f.deliver(&event(EventType::OrderPaid, &released)).await;
    f.deliver(&event(EventType::OrderCompleted, &released))
        .await;
    assert_eq!(f.assert_balance_matches_ledger("u2").await, (500, 0));
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 1);
    assert_eq!(f.assert_balance_matches_ledger("u2").await, (0, 500));
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 0, "released once");

    let cancel = event(EventType::OrderCancelled, &released);
    f.deliver(&cancel).await;
    f.deliver(&cancel).await;
    f.deliver(&event(EventType::OrderRefunded, &released)).await;
    let entries: Vec<_> = f
        .entries("u2")
        .await
        .into_iter()
        .filter(|e| e.order_id == released.order_id)
        .collect();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(
        (entries[0].kind, entries[0].amount),
        (EntryKind::Clawback, -500)
    );
    assert_eq!(entries[1].status, EntryStatus::Available);
    assert!(entries[1].reversed_at.is_some());
    assert_eq!(f.assert_balance_matches_ledger("u2").await, (0, 0));
    assert_eq!(f.db.events_of_type("RebateReversed").await.len(), 2);
}

#[tokio::test]
async fn a_refund_that_overtakes_its_payment_event_voids_the_credit() {
    let f = fixture(Duration::from_secs(3600), None).await;
    let order = paid_order("u3", &[("food", 3000)]);
    f.deliver(&event(EventType::OrderRefunded, &order)).await;
    f.deliver(&event(EventType::OrderPaid, &order)).await;
    assert!(f.entries("u3").await.is_empty());
    assert_eq!(f.assert_balance_matches_ledger("u3").await, (0, 0));
    // A cancel of an order never paid leaves nothing behind either.
    let unpaid = paid_order("u3", &[("food", 3000)]);
    f.deliver(&event(EventType::OrderCancelled, &unpaid)).await;
    assert!(f.entries("u3").await.is_empty());
}

#[tokio::test]
async fn a_release_sweep_about_to_time_out_leaves_the_backlog_to_the_next_run() {
    let f = fixture(Duration::ZERO, None).await;
    let order = paid_order("u5", &[("food", 2000)]);
    f.deliver(&event(EventType::OrderPaid, &order)).await;
    f.deliver(&event(EventType::OrderCompleted, &order)).await;
    assert_eq!(f.assert_balance_matches_ledger("u5").await, (200, 0));
    let sweep_with = |time_left: Duration| {
        let deadline = tokio::time::Instant::now() + time_left;
        adapters::runtime::DEADLINE.scope(deadline, release_rebates::sweep(&f.consumer.rebates))
    };

    let late = sweep_with(adapters::runtime::SWEEP_MARGIN / 2)
        .await
        .unwrap();
    assert_eq!(
        late,
        ReleaseReport {
            stopped_early: true,
            ..Default::default()
        }
    );
    assert_eq!(f.assert_balance_matches_ledger("u5").await, (200, 0));

    let next = sweep_with(adapters::runtime::SWEEP_MARGIN * 2)
        .await
        .unwrap();
    assert_eq!(
        next,
        ReleaseReport {
            released: 1,
            ..Default::default()
        }
    );
    assert_eq!(f.assert_balance_matches_ledger("u5").await, (0, 200));
}

#[tokio::test]
async fn release_and_refund_racing_leave_the_balance_equal_to_the_ledger() {
    let f = fixture(Duration::ZERO, None).await;
    for _ in 0..15 {
        let order = paid_order("u4", &[("food", 1000)]);
        f.deliver(&event(EventType::OrderPaid, &order)).await;
        f.deliver(&event(EventType::OrderCompleted, &order)).await;
        let refund = event(EventType::OrderRefunded, &order);
        let (released, ()) = tokio::join!(
            release_rebates::sweep(&f.consumer.rebates),
            f.deliver(&refund)
        );
        released.unwrap();
        let mine: Vec<_> = f
            .entries("u4")
            .await
            .into_iter()
            .filter(|e| e.order_id == order.order_id)
            .collect();
        // Either reversed while pending, or released and then clawed back.
        let net: i64 = mine
            .iter()
            .filter(|e| e.status != EntryStatus::Reversed)
            .map(|e| e.amount)
            .sum();
        assert_eq!(net, 0, "{mine:#?}");
    }
    assert_eq!(f.assert_balance_matches_ledger("u4").await, (0, 0));
}

#[tokio::test]
async fn orders_below_the_minimum_or_in_another_currency_earn_nothing() {
    let f = fixture(Duration::from_secs(3600), None).await;
    f.set_rules(
        serde_json::from_value(json!({"defaultRateBps": 100, "minOrderAmount": 1000})).unwrap(),
    )
    .await;
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("u5", &[("toys", 999)]),
    ))
    .await;
    let mut dollars = paid_order("u5", &[("toys", 100_000)]);
    dollars.currency = "USD".into();
    f.deliver(&event(EventType::OrderPaid, &dollars)).await;
    assert!(f.entries("u5").await.is_empty());
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("u5", &[("toys", 1000)]),
    ))
    .await;
    let entries = f.entries("u5").await;
    assert_eq!((entries.len(), entries[0].rules_version), (1, 2));
}

#[tokio::test]
async fn one_bad_message_fails_only_itself() {
    let f = fixture(Duration::from_secs(3600), None).await;
    let good = event(EventType::OrderPaid, &paid_order("u6", &[("food", 1000)]));
    let not_an_order = serde_json::to_string(
        &Envelope::new(EventType::OrderPaid, "c", PAID_AT, &json!({"orderId": 7})).unwrap(),
    )
    .unwrap();
    let response = f
        .consumer
        .handle_batch(batch(vec![
            message("poison", "{not json"),
            message("ok", &good),
            message("bad-data", &not_an_order),
        ]))
        .await;
    assert_eq!(failed_ids(&response), ["poison", "bad-data"]);
    assert_eq!(f.assert_balance_matches_ledger("u6").await, (100, 0));
}

#[tokio::test]
async fn the_statement_shows_only_the_callers_own_ledger_page_by_page() {
    let f = fixture(Duration::from_secs(3600), None).await;
    for amount in [1000, 2000, 3000] {
        f.deliver(&event(
            EventType::OrderPaid,
            &paid_order("alice", &[("food", amount)]),
        ))
        .await;
    }
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("bob", &[("food", 9000)]),
    ))
    .await;

    let (status, page) = f.statement("alice", &[("limit", "2")]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["balance"],
        json!({"pending": 600, "available": 0, "currency": "CNY"})
    );
    let amounts: Vec<_> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(300), json!(200)], "newest order first");
    let token = page["nextToken"].as_str().unwrap().to_owned();
    let (_, rest) = f
        .statement("alice", &[("limit", "2"), ("nextToken", &token)])
        .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextToken").is_none());

    let (status, error) = f.statement("bob", &[("nextToken", &token)]).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("INVALID_NEXT_TOKEN"))
    );
    let (_, bob) = f.statement("bob", &[]).await;
    assert_eq!(bob["entries"].as_array().unwrap().len(), 1);
    let (_, nobody) = f.statement("carol", &[]).await;
    assert_eq!(
        nobody,
        json!({
            "balance": {"pending": 0, "available": 0, "currency": "CNY"},
            "balances": [{"pending": 0, "available": 0, "currency": "CNY"}],
            "entries": [],
        })
    );
    assert_eq!(f.statement("alice", &[("limit", "0")]).await.0, 400);
}

/// Issue 28.3: a late or redriven OrderPaid is credited under the rules in
/// force when the order was paid, not the ones in force when it arrives.
#[tokio::test]
async fn a_late_event_is_credited_under_the_rules_in_force_when_paid() {
    let f = fixture(Duration::from_secs(3600), None).await;
    // Version 2, set after the payment: 50% on everything.
    f.consumer
        .rebates
        .replace_rules(
            serde_json::from_value(json!({"defaultRateBps": 5000})).unwrap(),
            "admin",
        )
        .await
        .unwrap();
    f.date_rules(|version| match version {
        1 => "2026-01-01T00:00:00.000Z".into(),
        _ => "2026-11-25T00:00:00.000Z".into(),
    })
    .await;
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("late", &[("food", 1000)]),
    ))
    .await;
    let entries = f.entries("late").await;
    assert_eq!(
        (entries[0].rules_version, entries[0].amount),
        (1, 100),
        "10% on food under version 1, not 50% under version 2"
    );
    // Paid before any rules existed: nothing.
    f.date_rules(|_| "2026-11-25T00:00:00.000Z".into()).await;
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("early", &[("food", 1000)]),
    ))
    .await;
    assert!(f.entries("early").await.is_empty());
}

/// After many edits of the rules, a late event still finds the version in
/// force when its order was paid, in a few reads: versions are set in
/// order, so a binary search over them, not a walk back through every
/// version since (the bench found ~9 ms of CPU an event after ~50 edits).
#[tokio::test]
async fn the_rules_in_force_are_found_in_a_few_reads_among_many_versions() {
    let f = fixture(Duration::from_secs(3600), None).await;
    for _ in 2..=60 {
        f.consumer
            .rebates
            .replace_rules(rules(None), "admin")
            .await
            .unwrap();
    }
    let (client, round_trips) = system_tests::dynamo::counted_client().await;
    let consumer = RebateConsumer {
        rebates: Rebates::new(client, f.db.tables.clone()),
        markers_table: f.db.tables.processed_events.clone(),
        after_sales: f.consumer.after_sales,
    };
    for in_force in [1, 2, 17, 30, 31, 58, 59, 60] {
        // Versions up to `in_force` set before the payment, the others after.
        f.date_rules(|version| {
            let day = if version <= in_force {
                "01-01"
            } else {
                "11-25"
            };
            format!("2026-{day}T{:02}:{:02}:00.000Z", version / 60, version % 60)
        })
        .await;
        let user = format!("late-{in_force}");
        round_trips.reset();
        let response = consumer
            .handle_batch(batch(vec![message(
                "m",
                &event(EventType::OrderPaid, &paid_order(&user, &[("food", 1000)])),
            )]))
            .await;
        assert!(failed_ids(&response).is_empty());
        let reads = round_trips.operations().matches("GetItem").count();
        assert!(
            reads <= 8,
            "version {in_force} of 60 took {reads} reads: {}",
            round_trips.operations()
        );
        let entries = f.entries(&user).await;
        assert_eq!(
            entries.iter().map(|e| e.rules_version).collect::<Vec<_>>(),
            [in_force as u32],
            "{user}"
        );
    }
    // Paid before any rules existed: nothing, in as few reads.
    f.date_rules(|version| format!("2026-11-25T{:02}:{:02}:00.000Z", version / 60, version % 60))
        .await;
    round_trips.reset();
    consumer
        .handle_batch(batch(vec![message(
            "m",
            &event(
                EventType::OrderPaid,
                &paid_order("early", &[("food", 1000)]),
            ),
        )]))
        .await;
    assert!(round_trips.operations().matches("GetItem").count() <= 8);
    assert!(f.entries("early").await.is_empty());
}

/// Issue 28.2: a credit in another currency has a balance (and a monthly
/// cap total) of its own; amounts in two currencies are never added.
#[tokio::test]
async fn balances_and_caps_are_kept_per_currency() {
    let f = fixture(Duration::from_secs(3600), Some(150)).await;
    f.deliver(&event(
        EventType::OrderPaid,
        &paid_order("mixed", &[("food", 1000)]),
    ))
    .await;
    f.set_rules(
        serde_json::from_value(
            json!({"currency": "USD", "defaultRateBps": 1000, "maxPerUserPerMonth": 150}),
        )
        .unwrap(),
    )
    .await;
    let mut dollars = paid_order("mixed", &[("toys", 1000)]);
    dollars.currency = "USD".into();
    f.deliver(&event(EventType::OrderPaid, &dollars)).await;
    let (status, statement) = f.statement("mixed", &[]).await;
    assert_eq!(status, 200, "{statement}");
    assert_eq!(
        statement["balances"],
        json!([
            {"currency": "CNY", "pending": 100, "available": 0},
            {"currency": "USD", "pending": 100, "available": 0},
        ]),
        "the USD cap (150) did not count the CNY credit"
    );
    assert_eq!(statement["balance"]["currency"], "CNY");
    assert_eq!(statement["balance"]["pending"], 100);
}

/// `OrderLinesRefunded` for `order` after refund request `request_id`
/// refunded `lines` (product, units) of it.
fn lines_refunded(order: &mut Order, request_id: &str, lines: &[(&str, i64)]) -> String {
    let data = system_tests::refunds::lines_refunded(order, request_id, lines, PAID_AT);
    serde_json::to_string(
        &Envelope::new(EventType::OrderLinesRefunded, "corr", PAID_AT, &data).unwrap(),
    )
    .unwrap()
}

/// Issue 22.3: a refund of some lines takes back only their share of the
/// rebate, as the credit computed it; pending, the share is an entry that
/// is released with its credit (so the available balance gets the net);
/// available, it comes off at once; the last lines take what is left; two
/// requests' events racing both count; balances equal the ledger all along.
#[tokio::test]
async fn refunded_lines_take_back_only_their_share_pending_or_available() {
    let f = fixture(Duration::ZERO, None).await;
    // 10 % on food, 1 % on the rest: tea 2 × 1000 earns 200, the cup 5.
    let mut order = paid_order("u9", &[("food", 1000), ("home", 500)]);
    order.items[0].quantity = 2;
    order.items[0].line_amount = 2000;
    order.order_amount = 2500;
    f.deliver(&event(EventType::OrderPaid, &order)).await;
    assert_eq!(f.assert_balance_matches_ledger("u9").await, (205, 0));

    // While pending: one tea and, at the same time, nothing else (a
    // redelivery of the same event racing itself).
    let one_tea = lines_refunded(&mut order, "r1", &[("p0", 1)]);
    tokio::join!(f.deliver(&one_tea), f.deliver(&one_tea));
    f.deliver(&one_tea).await;
    assert_eq!(f.assert_balance_matches_ledger("u9").await, (105, 0));
    let reductions: Vec<LedgerEntry> = f
        .entries("u9")
        .await
        .into_iter()
        .filter(|e| e.kind == EntryKind::Clawback)
        .collect();
    assert_eq!(reductions.len(), 1, "{reductions:#?}");
    assert_eq!(
        (reductions[0].amount, reductions[0].status),
        (-100, EntryStatus::Pending)
    );

    // Not completed: nothing is released. Completed, the sweep releases
    // the credit and its reduction (which waited with it): 105 available.
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 0);
    f.deliver(&event(EventType::OrderCompleted, &order)).await;
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 2);
    assert_eq!(f.assert_balance_matches_ledger("u9").await, (0, 105));

    // Available: the cup and the last tea, racing; the last lines (the
    // order REFUNDED) take whatever is left, so nothing stays.
    let mut first = order.clone();
    let cup = lines_refunded(&mut first, "r2", &[("p1", 1)]);
    let last_tea = lines_refunded(&mut first, "r3", &[("p0", 1)]);
    assert!(last_tea.contains("\"orderStatus\":\"REFUNDED\""));
    tokio::join!(f.deliver(&cup), f.deliver(&last_tea));
    f.deliver(&cup).await;
    assert_eq!(f.assert_balance_matches_ledger("u9").await, (0, 0));
    let credit = f
        .entries("u9")
        .await
        .into_iter()
        .find(|e| e.kind == EntryKind::Credit)
        .unwrap();
    assert_eq!((credit.amount, credit.reversed_amount), (205, 205));
    // The last tea's event may be handled before the cup's: then it takes
    // the cup's share too, and the cup's finds nothing left to take.
    let reductions = f
        .entries("u9")
        .await
        .into_iter()
        .filter(|e| e.kind == EntryKind::Clawback)
        .count();
    assert!((2..=3).contains(&reductions), "{reductions}");
    assert_eq!(
        f.db.events_of_type("RebateReversed").await.len(),
        reductions,
        "one message per entry"
    );
}

/// Issue 22.3: a credit stays pending until its order is completed, and
/// then until the after-sales window closes; a redelivered completion
/// changes nothing.
#[tokio::test]
async fn a_credit_waits_for_completion_and_then_for_the_after_sales_window() {
    let f = fixture(Duration::from_secs(3600), None).await;
    let order = paid_order("s1", &[("food", 3000)]);
    f.deliver(&event(EventType::OrderPaid, &order)).await;
    let credit = &f.entries("s1").await[0];
    assert_eq!(
        (credit.status, &credit.available_at),
        (EntryStatus::Pending, &None)
    );

    let completed = event(EventType::OrderCompleted, &order);
    let completed_at: String =
        serde_json::from_str::<Value>(&completed).unwrap()["data"]["completedAt"]
            .as_str()
            .unwrap()
            .to_owned();
    for _ in 0..3 {
        f.deliver(&completed).await;
    }
    let credit = &f.entries("s1").await[0];
    let expected = domain::refund_requests::window_closes(&completed_at, time::Duration::HOUR)
        .map(domain::clock::rfc3339);
    assert_eq!(credit.available_at, expected, "the window's close");
    assert_eq!(credit.status, EntryStatus::Pending);
    // The window is an hour: nothing is due yet.
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 0);
    assert_eq!(f.assert_balance_matches_ledger("s1").await, (300, 0));
    // A later run past the close releases it, once.
    let later = domain::clock::now() + time::Duration::HOUR * 2;
    let report = f
        .consumer
        .rebates
        .release_due(later, || false)
        .await
        .unwrap();
    assert_eq!(report.released, 1);
    let report = f
        .consumer
        .rebates
        .release_due(later, || false)
        .await
        .unwrap();
    assert_eq!(report.released, 0);
    assert_eq!(f.assert_balance_matches_ledger("s1").await, (0, 300));
}

/// Events arrive out of order: a completion handled before (or racing) its
/// order's `OrderPaid` still gives the credit its release time.
#[tokio::test]
async fn a_completion_before_or_racing_the_credit_still_releases_it() {
    let f = fixture(Duration::ZERO, None).await;
    let first = paid_order("s2", &[("food", 1000)]);
    f.deliver(&event(EventType::OrderCompleted, &first)).await;
    f.deliver(&event(EventType::OrderPaid, &first)).await;
    let mut orders = vec![first];
    for _ in 0..10 {
        let order = paid_order("s2", &[("food", 1000)]);
        let (paid, completed) = (
            event(EventType::OrderPaid, &order),
            event(EventType::OrderCompleted, &order),
        );
        tokio::join!(f.deliver(&paid), f.deliver(&completed));
        orders.push(order);
    }
    let entries = f.entries("s2").await;
    assert_eq!(entries.len(), 11);
    assert!(
        entries.iter().all(|e| e.available_at.is_some()),
        "{entries:#?}"
    );
    let report = release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    assert_eq!(report.released, 11);
    assert_eq!(f.assert_balance_matches_ledger("s2").await, (0, 1100));
}

/// A refund of some lines racing the order's completion: the reduction is
/// scheduled with its credit whichever lands first, so the available
/// balance gets the net and nothing stays pending.
#[tokio::test]
async fn a_reduction_racing_the_completion_is_released_with_its_credit() {
    let f = fixture(Duration::ZERO, None).await;
    for round in 0..8 {
        let mut order = paid_order("s3", &[("food", 1000), ("food", 1000)]);
        f.deliver(&event(EventType::OrderPaid, &order)).await;
        let one = lines_refunded(&mut order, &format!("r{round}"), &[("p0", 1)]);
        let completed = event(EventType::OrderCompleted, &order);
        tokio::join!(f.deliver(&one), f.deliver(&completed));
    }
    let entries = f.entries("s3").await;
    assert_eq!(entries.len(), 16, "a credit and a reduction per order");
    assert!(
        entries.iter().all(|e| e.available_at.is_some()),
        "{entries:#?}"
    );
    release_rebates::sweep(&f.consumer.rebates).await.unwrap();
    // 200 earned, 100 taken back, per order.
    assert_eq!(f.assert_balance_matches_ledger("s3").await, (0, 800));
}
