//! Orders through the deployed local stack: real tokens, API Gateway, the
//! Lambda binaries, DynamoDB, and the EventBridge schedule of the sweeper.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Stack, unique_id};

async fn product(stack: &Stack, stock: i64) -> String {
    stack.new_product("e2e-order", 9900, stock).await
}

async fn counters(stack: &Stack, id: &str) -> (i64, i64) {
    stack.counters(id).await
}

#[tokio::test]
async fn order_read_list_and_cancel() {
    let stack = Stack::from_env();
    let id = product(&stack, 5).await;

    let (status, order) = stack
        .call(
            Method::POST,
            "/orders",
            Some(&stack.user_token),
            Some(json!({"productId": id, "quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["orderStatus"], "PENDING_PAYMENT");
    assert_eq!(order["orderAmount"], 19800);
    let order_id = order["orderId"].as_str().unwrap();
    assert_eq!(counters(&stack, &id).await, (3, 2));

    let path = format!("/orders/{order_id}");
    let (status, read) = stack
        .call(Method::GET, &path, Some(&stack.user_token), None)
        .await;
    assert_eq!((status, &read), (StatusCode::OK, &order));
    let (status, body) = stack
        .call(Method::GET, &path, Some(&stack.other_token), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's order is not found: {body}"
    );
    assert_eq!(body["error"]["code"], "ORDER_NOT_FOUND");

    let (status, list) = stack
        .call(
            Method::GET,
            "/orders?limit=100",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["orderId"] == order_id)
    );
    let (_, others) = stack
        .call(
            Method::GET,
            "/orders?limit=100",
            Some(&stack.other_token),
            None,
        )
        .await;
    assert!(
        !others["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["orderId"] == order_id)
    );

    let (status, body) = stack
        .call(
            Method::POST,
            &format!("{path}/cancel"),
            Some(&stack.other_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, cancelled) = stack
        .call(
            Method::POST,
            &format!("{path}/cancel"),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["orderStatus"], "CANCELLED");
    assert_eq!(counters(&stack, &id).await, (5, 0));
}

#[tokio::test]
async fn order_errors() {
    let stack = Stack::from_env();
    let id = product(&stack, 1).await;
    let (status, body) = stack
        .call(
            Method::POST,
            "/orders",
            Some(&stack.user_token),
            Some(json!({"productId": id, "quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(body["error"]["available"], 1);

    let (status, body) = stack
        .call(
            Method::POST,
            "/orders",
            Some(&stack.user_token),
            Some(json!({"productId": "no-such-product-e2e", "quantity": 1})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PRODUCT_NOT_FOUND"))
    );

    let (status, body) = stack
        .call(
            Method::POST,
            "/orders",
            Some(&stack.user_token),
            Some(json!({"productId": id, "quantity": -1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _) = stack
        .call(
            Method::POST,
            "/orders",
            None,
            Some(json!({"productId": id, "quantity": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = stack
        .call(
            Method::GET,
            "/orders/01JXXXXXXXXXXXXXXXXXXXXXXX",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(counters(&stack, &id).await, (1, 0));
}

#[tokio::test]
async fn idempotency_key_through_the_api() {
    let stack = Stack::from_env();
    let id = product(&stack, 10).await;
    let key = unique_id("key");
    let send = |quantity: i64| {
        let (stack, id, key) = (&stack, id.clone(), key.clone());
        async move {
            let response = reqwest::Client::new()
                .post(format!("{}/orders", stack.api_url))
                .bearer_auth(&stack.user_token)
                .header("Idempotency-Key", key)
                .json(&json!({"productId": id, "quantity": quantity}))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (s1, first) = send(3).await;
    let (s2, second) = send(3).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, second);
    let (s3, body) = send(4).await;
    assert_eq!(
        (s3, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    assert_eq!(counters(&stack, &id).await, (7, 3));
}

/// The EventBridge schedule runs the sweeper every minute; the test stack's
/// payment window is 20 s, so an unpaid order expires within ~80 s.
#[tokio::test]
async fn unpaid_orders_expire_on_schedule() {
    let stack = Stack::from_env();
    let id = product(&stack, 4).await;
    let (status, order) = stack
        .call(
            Method::POST,
            "/orders",
            Some(&stack.user_token),
            Some(json!({"productId": id, "quantity": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/orders/{}", order["orderId"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let (_, current) = stack
            .call(Method::GET, &path, Some(&stack.user_token), None)
            .await;
        if current["orderStatus"] == "EXPIRED" {
            break;
        }
        assert_eq!(current["orderStatus"], "PENDING_PAYMENT");
        assert!(
            Instant::now() < deadline,
            "the order did not expire within 150 s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(
        counters(&stack, &id).await,
        (4, 0),
        "its stock was released"
    );
}

/// A small race through API Gateway and the Lambda processes (the big ones
/// run in-process against DynamoDB Local in tests/orders.rs).
#[tokio::test]
async fn racing_buyers_through_the_api_never_oversell() {
    let stack = Arc::new(Stack::from_env());
    let id = product(&stack, 10).await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (stack, id) = (stack.clone(), id.clone());
            tokio::spawn(async move {
                stack
                    .call(
                        Method::POST,
                        "/orders",
                        Some(&stack.other_token),
                        Some(json!({"productId": id, "quantity": 1})),
                    )
                    .await
            })
        })
        .collect();
    let mut sold = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => sold += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(sold, 10);
    assert_eq!(counters(&stack, &id).await, (0, 10));
}

/// The per-user token bucket through the stack (50 at once on the test
/// stack, then 1 a second): one user ordering from 8 connections as fast
/// as the stack answers is refused with 429 and `Retry-After`, and every
/// refused order reserved nothing. (Not hundreds at once: the emulator runs
/// each concurrent invocation as a process, and a 2-core machine stalls.)
#[tokio::test]
async fn one_user_ordering_too_fast_gets_429_with_retry_after() {
    let stack = Arc::new(Stack::from_env());
    let token = Arc::new(system_tests::required_env("E2E_THROTTLED_TOKEN"));
    let id = Arc::new(stack.new_product("e2e-throttle", 100, 500).await);
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stack, token, id, http) = (stack.clone(), token.clone(), id.clone(), http.clone());
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..15 {
                let response = http
                    .post(format!("{}/orders", stack.api_url))
                    .bearer_auth(token.as_str())
                    .json(&json!({"productId": id.as_str(), "quantity": 1}))
                    .send()
                    .await
                    .unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                outcomes.push((status, retry_after, body));
            }
            outcomes
        }));
    }
    let (mut placed, mut limited) = (0, 0);
    for worker in workers {
        for (status, retry_after, body) in worker.await.unwrap() {
            match status {
                StatusCode::CREATED => placed += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    limited += 1;
                    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
                    assert!(retry_after.is_some(), "429 without Retry-After");
                }
                other => assert_eq!(other, StatusCode::SERVICE_UNAVAILABLE, "{body}"),
            }
        }
    }
    assert!(limited > 0, "nobody was limited ({placed} placed)");
    let (stock, reserved) = stack.counters(&id).await;
    assert_eq!((stock, reserved), (500 - placed, placed));
}

/// A paid order's life after payment, through the stack: the shop ships it
/// (a shopper may not), it can no longer be cancelled, its buyer confirms
/// receipt while the auto-confirm sweep (`AutoConfirmDays=0` on the test
/// stack) may race for it, and the inbox has one message for each step.
#[tokio::test]
async fn a_paid_order_ships_and_completes_once_with_a_message_for_each_step() {
    let stack = Stack::from_env();
    let token = stack.notify_tokens[3].clone();
    let product = product(&stack, 5).await;
    let flow = stack.order_with_payment(&product, 1, &token).await;
    flow.notify("SUCCESS").await;
    flow.wait_for_order("PAID", Duration::from_secs(60)).await;
    let order_id = flow.order_id.clone();
    let shipments = format!("/orders/{order_id}/shipments");
    let shipment = json!({"carrier": "顺丰速运", "trackingNumber": "SF1234567890"});

    let (status, _) = stack
        .call(
            Method::POST,
            &shipments,
            Some(&token),
            Some(shipment.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = stack
        .call(
            Method::POST,
            &shipments,
            Some(&stack.admin_token),
            Some(json!({"carrier": "SF", "trackingNumber": "SF 12"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "trackingNumber", "{body}");
    // Ten identical shipments at once: one ships it, the rest see it shipped.
    let answers = futures::future::join_all((0..10).map(|_| {
        stack.call(
            Method::POST,
            &shipments,
            Some(&stack.admin_token),
            Some(shipment.clone()),
        )
    }))
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, b)| s.is_success() && b["shipment"]["trackingNumber"] == "SF1234567890"),
        "{answers:?}"
    );

    let (status, body) = stack
        .call(
            Method::POST,
            &format!("/orders/{order_id}/cancel"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "ORDER_NOT_CANCELLABLE");

    let receipt = format!("/orders/{order_id}/receipt");
    let (status, _) = stack
        .call(Method::POST, &receipt, Some(&stack.other_token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, done) = stack.call(Method::POST, &receipt, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["orderStatus"], "COMPLETED");
    assert_eq!(done["shipment"]["carrier"], "顺丰速运");
    // Completed: a second confirmation is fine, shipping again is not.
    assert_eq!(
        stack
            .call(Method::POST, &receipt, Some(&token), None)
            .await
            .0,
        StatusCode::OK
    );
    let other = json!({"carrier": "EMS", "trackingNumber": "E1"});
    assert_eq!(
        stack
            .call(
                Method::POST,
                &shipments,
                Some(&stack.admin_token),
                Some(other)
            )
            .await
            .0,
        StatusCode::CONFLICT
    );
    let expected: std::collections::BTreeMap<String, usize> = [
        // The default locale is zh-CN.
        ("订单已创建", 1),
        ("支付成功", 1),
        ("订单已发货", 1),
        ("订单已完成", 1),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect();
    let inbox = stack
        .wait_for(
            "/me/notifications?limit=100",
            &token,
            Duration::from_secs(90),
            |inbox| system_tests::e2e::titles_for(inbox, &order_id) == expected,
        )
        .await;
    let shipped = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == "订单已发货")
        .unwrap();
    assert!(
        shipped["body"].as_str().unwrap().contains("SF1234567890"),
        "{shipped}"
    );
}

/// After-sales refunds through the stack: ten racing requests on a 3-unit
/// line file exactly three; another shopper sees none of it and a shopper
/// decides nothing; an approval refunds one line's unit through the
/// provider (twice asked, once done), puts the returned unit back in stock
/// and leaves the order PARTIALLY_REFUNDED; a rejection frees its unit for
/// a new request; the buyer's inbox tells of the refund once.
#[tokio::test]
async fn refund_requests_claim_each_unit_once_and_an_approval_refunds_only_its_lines() {
    let stack = Stack::from_env();
    let token = stack.notify_tokens[3].clone();
    // In the rebate category, so that the order earns a rebate whose
    // refunded line's share comes back.
    stack.ensure_rebate_rules().await;
    let product = stack
        .new_product_in(system_tests::e2e::REBATE_CATEGORY, "e2e-refund", 9900, 10)
        .await;
    let flow = stack.order_with_payment(&product, 3, &token).await;
    flow.notify("SUCCESS").await;
    flow.wait_for_order("PAID", Duration::from_secs(60)).await;
    let order_id = flow.order_id.clone();
    let (status, _) = stack
        .call(
            Method::POST,
            &format!("/orders/{order_id}/shipments"),
            Some(&stack.admin_token),
            Some(json!({"carrier": "SF", "trackingNumber": "SF42"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, done) = stack
        .call(
            Method::POST,
            &format!("/orders/{order_id}/receipt"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(stack.counters(&product).await, (7, 0));

    let requests = format!("/orders/{order_id}/refund-requests");
    let one = json!({"items": [{"productId": product, "quantity": 1}], "reason": "cracked lid", "returnGoods": true});
    // Bad input names its field and files nothing.
    for (body, field) in [
        (
            json!({"items": [{"productId": product, "quantity": 0}], "reason": "x", "returnGoods": true}),
            "items[0].quantity",
        ),
        (
            json!({"items": [{"productId": product, "quantity": 4}], "reason": "x", "returnGoods": true}),
            "items[0].quantity",
        ),
        (
            json!({"items": [{"productId": "no-such-line", "quantity": 1}], "reason": "x", "returnGoods": true}),
            "items[0].productId",
        ),
    ] {
        let (status, answer) = stack
            .call(Method::POST, &requests, Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, _) = stack
        .call(
            Method::POST,
            &requests,
            Some(&stack.other_token),
            Some(one.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ten at once, one unit each, on a line of three.
    let answers = futures::future::join_all(
        (0..10).map(|_| stack.call(Method::POST, &requests, Some(&token), Some(one.clone()))),
    )
    .await;
    let filed: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(filed.len(), 3, "{answers:?}");
    assert!(
        answers.iter().all(|(s, b)| *s == StatusCode::CREATED
            || (*s == StatusCode::CONFLICT && b["error"]["code"] == "REFUND_QUANTITY_EXCEEDED")),
        "{answers:?}"
    );
    let (status, mine) = stack.call(Method::GET, &requests, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["items"].as_array().unwrap().len(), 3, "{mine}");
    let (status, _) = stack
        .call(Method::GET, &requests, Some(&stack.other_token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let decision = |id: &Value| format!("/admin/refund-requests/{}/decision", id.as_str().unwrap());
    let (approve_id, reject_id) = (&filed[0]["refundRequestId"], &filed[1]["refundRequestId"]);
    let (status, _) = stack
        .call(
            Method::POST,
            &decision(approve_id),
            Some(&token),
            Some(json!({"decision": "APPROVE"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = stack
        .call(Method::GET, "/admin/refund-requests", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, queue) = stack
        .call(
            Method::GET,
            "/admin/refund-requests?status=REQUESTED&limit=100",
            Some(&stack.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queue}");

    // Two admins approve the same request at once: one refund.
    let approve_path = decision(approve_id);
    let approvals = futures::future::join_all((0..2).map(|_| {
        stack.call(
            Method::POST,
            &approve_path,
            Some(&stack.admin_token),
            Some(json!({"decision": "APPROVE"})),
        )
    }))
    .await;
    for (status, body) in &approvals {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["requestStatus"], "REFUNDED", "{body}");
    }
    assert_eq!(
        approvals[0].1["providerRefundId"],
        approvals[1].1["providerRefundId"]
    );
    let (status, rejected) = stack
        .call(
            Method::POST,
            &decision(reject_id),
            Some(&stack.admin_token),
            Some(json!({"decision": "REJECT", "reason": "no photo of the damage"})),
        )
        .await;
    assert_eq!(
        (status, &rejected["requestStatus"]),
        (StatusCode::OK, &json!("REJECTED")),
        "{rejected}"
    );
    let (status, late) = stack
        .call(
            Method::POST,
            &decision(reject_id),
            Some(&stack.admin_token),
            Some(json!({"decision": "APPROVE"})),
        )
        .await;
    assert_eq!(
        (status, &late["error"]["code"]),
        (StatusCode::CONFLICT, &json!("REFUND_REQUEST_DECIDED"))
    );

    let (_, order) = stack
        .call(
            Method::GET,
            &format!("/orders/{order_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(order["orderStatus"], "PARTIALLY_REFUNDED", "{order}");
    assert_eq!(order["refundedAmount"], 9900);
    assert_eq!(order["refundedUnits"][&product], 1);
    // The returned unit is on sale again.
    assert_eq!(stack.counters(&product).await, (8, 0));
    // The rejected unit may be asked for again; then the line is full.
    let (status, again) = stack
        .call(Method::POST, &requests, Some(&token), Some(one.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let (status, full) = stack
        .call(Method::POST, &requests, Some(&token), Some(one.clone()))
        .await;
    assert_eq!(
        (status, &full["error"]["claimable"]),
        (StatusCode::CONFLICT, &json!(0)),
        "{full}"
    );

    let inbox = stack
        .wait_for(
            "/me/notifications?limit=100",
            &token,
            Duration::from_secs(90),
            |inbox| system_tests::e2e::titles_for(inbox, &order_id).get("退款成功") == Some(&1),
        )
        .await;
    let refund = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == "退款成功" && n["body"].as_str().unwrap_or("").contains(&order_id))
        .unwrap();
    assert!(
        refund["body"].as_str().unwrap().contains("99.00"),
        "{refund}"
    );

    // The rebate gives back the refunded unit's share of it, as the credit
    // computed it (one of three units of its only line, after its caps).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let statement = stack.rebate_statement(&token).await;
        let entries = system_tests::e2e::entries_of(&statement, &order_id);
        let credit = entries.iter().find(|e| e["kind"] == "CREDIT");
        let taken: Vec<i64> = entries
            .iter()
            .filter(|e| e["kind"] == "CLAWBACK")
            .map(|e| e["amount"].as_i64().unwrap())
            .collect();
        if let (Some(credit), [taken]) = (credit, taken.as_slice()) {
            let earned = credit["amount"].as_i64().unwrap();
            let line = credit["lines"][0]["amount"].as_i64().unwrap();
            assert_eq!(*taken, -(earned * (line / 3) / line), "{statement}");
            assert_eq!(credit["reversedAmount"], -taken, "{credit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reduction of the rebate: {statement}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
