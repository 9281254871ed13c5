//! Rebates through the deployed local stack: OrderPaid → rebates queue →
//! ledger, the scheduled release when a received order's after-sales window
//! closes (69 s on the test stack), reversal and clawback on refunds, the monthly cap, and the rules
//! routes. Each test has a user of its own (`E2E_REBATE_TOKENS`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Flow, REBATE_CATEGORY as CATEGORY, Stack, entries_of, stack_aws};

/// Polls the caller's statement until `done` holds for the order's entries.
async fn wait_for_entries(
    stack: &Stack,
    token: &str,
    order_id: &str,
    within: Duration,
    done: impl Fn(&[&Value]) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let statement = stack.rebate_statement(token).await;
        if done(&entries_of(&statement, order_id)) {
            return statement;
        }
        assert!(
            Instant::now() < deadline,
            "rebate entries of {order_id} not as expected after {within:?}: {statement}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A paid order of 1 unit at `price`, PAID when this returns.
async fn paid_order<'a>(stack: &'a Stack, token: &str, price: i64) -> Flow<'a> {
    let product = stack
        .new_product_in(CATEGORY, "e2e-rebate", price, 10)
        .await;
    let flow = stack.order_with_payment(&product, 1, token).await;
    flow.notify("SUCCESS").await;
    flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    flow
}

fn balance(statement: &Value) -> (i64, i64) {
    (
        statement["balance"]["pending"].as_i64().unwrap(),
        statement["balance"]["available"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_paid_order_shows_a_pending_rebate_to_its_owner_only() {
    let stack = Stack::from_env();
    stack.ensure_rebate_rules().await;
    let user = &stack.rebate_tokens[0];
    let flow = paid_order(&stack, user, 3000).await;
    let statement = wait_for_entries(&stack, user, &flow.order_id, Duration::from_secs(30), |e| {
        !e.is_empty()
    })
    .await;
    let entry = entries_of(&statement, &flow.order_id)[0].clone();
    assert_eq!(entry["status"], "PENDING", "{entry}");
    assert_eq!(entry["amount"], 300);
    assert_eq!(entry["kind"], "CREDIT");
    assert!(entry["rulesVersion"].as_u64().unwrap() >= 1);
    assert_eq!(balance(&statement), (300, 0));

    let other = statement_of_other(&stack).await;
    assert!(entries_of(&other, &flow.order_id).is_empty(), "{other}");
}

async fn statement_of_other(stack: &Stack) -> Value {
    stack.rebate_statement(&stack.other_token).await
}

#[tokio::test]
async fn the_same_order_paid_event_ten_times_credits_once() {
    let stack = Stack::from_env();
    stack.ensure_rebate_rules().await;
    let user = &stack.rebate_tokens[1];
    let flow = paid_order(&stack, user, 2000).await;
    wait_for_entries(&stack, user, &flow.order_id, Duration::from_secs(30), |e| {
        !e.is_empty()
    })
    .await;

    // Ten more OrderPaid events for the same order, each with its own id,
    // straight into the rebates queue.
    let (outputs, config) = stack_aws().await;
    let (_, order) = stack
        .call(
            Method::GET,
            &format!("/orders/{}", flow.order_id),
            Some(user),
            None,
        )
        .await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for _ in 0..10 {
        let envelope = domain::events::Envelope::new(
            domain::events::EventType::OrderPaid,
            "redelivery-test",
            &domain::clock::now_rfc3339(),
            &order,
        )
        .unwrap();
        sqs.send_message()
            .queue_url(outputs["RebatesQueueUrl"].as_str().unwrap())
            .message_body(serde_json::to_string(&envelope).unwrap())
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let statement = stack.rebate_statement(user).await;
    assert_eq!(
        entries_of(&statement, &flow.order_id).len(),
        1,
        "{statement}"
    );
    assert_eq!(balance(&statement).0 + balance(&statement).1, 200);
}

#[tokio::test]
async fn refunds_reverse_pending_rebates_and_claw_back_released_ones() {
    let stack = Stack::from_env();
    stack.ensure_rebate_rules().await;
    let user = &stack.rebate_tokens[2];
    let cancel = |order_id: String| {
        let stack = &stack;
        async move {
            let (status, body) = stack
                .call(
                    Method::POST,
                    &format!("/orders/{order_id}/cancel"),
                    Some(user),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
    };

    // Refunded while pending: reversed, balance back to zero.
    let first = paid_order(&stack, user, 1000).await;
    wait_for_entries(
        &stack,
        user,
        &first.order_id,
        Duration::from_secs(30),
        |e| !e.is_empty(),
    )
    .await;
    cancel(first.order_id.clone()).await;
    let statement = wait_for_entries(
        &stack,
        user,
        &first.order_id,
        Duration::from_secs(45),
        |e| e.len() == 1 && e[0]["status"] == "REVERSED",
    )
    .await;
    assert_eq!(balance(&statement), (0, 0));

    // Received, with a refund asked for within the after-sales window
    // (69 s on the test stack) and decided after it: the credit waits for
    // the receipt, is released by the sweep when the window closes, and the
    // late approval's clawback takes it back off the available balance.
    let second = paid_order(&stack, user, 4000).await;
    let statement = wait_for_entries(
        &stack,
        user,
        &second.order_id,
        Duration::from_secs(30),
        |e| !e.is_empty(),
    )
    .await;
    let credit = entries_of(&statement, &second.order_id)[0].clone();
    assert!(
        credit.get("availableAt").is_none(),
        "waits for completion: {credit}"
    );
    second.ship_and_receive().await;
    let (status, request) = stack
        .call(
            Method::POST,
            &format!("/orders/{}/refund-requests", second.order_id),
            Some(user),
            Some(json!({"items": [{"productId": second.product, "quantity": 1}], "reason": "changed my mind", "returnGoods": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let statement = wait_for_entries(
        &stack,
        user,
        &second.order_id,
        Duration::from_secs(200),
        |e| e.len() == 1 && e[0]["status"] == "AVAILABLE",
    )
    .await;
    assert_eq!(balance(&statement), (0, 400));
    let released = entries_of(&statement, &second.order_id)[0].clone();
    assert!(
        released["availableAt"].as_str().unwrap() <= domain::clock::now_rfc3339().as_str(),
        "{released}"
    );
    let (status, decided) = stack
        .call(
            Method::POST,
            &format!(
                "/admin/refund-requests/{}/decision",
                request["refundRequestId"].as_str().unwrap()
            ),
            Some(&stack.admin_token),
            Some(json!({"decision": "APPROVE"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let statement = wait_for_entries(
        &stack,
        user,
        &second.order_id,
        Duration::from_secs(45),
        |e| e.len() == 2,
    )
    .await;
    let entries = entries_of(&statement, &second.order_id);
    assert_eq!(entries[0]["kind"], "CLAWBACK", "{statement}");
    assert_eq!(entries[0]["amount"], -400);
    assert_eq!(balance(&statement), (0, 0));
}

#[tokio::test]
async fn the_monthly_cap_spans_several_orders() {
    let stack = Stack::from_env();
    stack.ensure_rebate_rules().await;
    let user = &stack.rebate_tokens[3];
    let mut orders = Vec::new();
    for _ in 0..4 {
        // 10% of 10000 is 1000 each; the month allows 2500 in all.
        let flow = paid_order(&stack, user, 10_000).await;
        orders.push(flow.order_id.clone());
    }
    // Three entries (1000, 1000, 500); the fourth order earns nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let statement = loop {
        let statement = stack.rebate_statement(user).await;
        if statement["entries"].as_array().unwrap().len() >= 3 {
            break statement;
        }
        assert!(Instant::now() < deadline, "{statement}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let statement = {
        let later = stack.rebate_statement(user).await;
        assert_eq!(later["entries"], statement["entries"], "no fourth entry");
        later
    };
    let mut amounts: Vec<i64> = statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [500, 1000, 1000], "{statement}");
    assert_eq!(balance(&statement), (2500, 0));
    let capped: Vec<_> = statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cappedBy"] == "PER_USER_PER_MONTH")
        .collect();
    assert_eq!(capped.len(), 1, "{statement}");
}

#[tokio::test]
async fn rules_are_admin_only_and_validated() {
    let stack = Stack::from_env();
    let (status, _) = stack
        .call(
            Method::GET,
            "/admin/rebate-rules",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = stack
        .call(
            Method::PUT,
            "/admin/rebate-rules",
            Some(&stack.admin_token),
            Some(json!({"defaultRateBps": 0, "categoryRatesBps": {CATEGORY: 20000}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("categoryRatesBps.e2e-rebate"),
        "{body}"
    );
    stack.ensure_rebate_rules().await;
    let (status, rules) = stack
        .call(
            Method::GET,
            "/admin/rebate-rules",
            Some(&stack.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rules["categoryRatesBps"][CATEGORY], 1000);
}
