//! WECHAT_PAY payments through the deployed local stack against the WeChat
//! Pay simulator (scripts/simulators/wechatpay.py): our connector's signed
//! calls and its checks of WeChat Pay's signed answers (by platform
//! certificate serial), the code_url, notifications encrypted with the
//! APIv3 key and signed by WeChat Pay's public key (by `PUB_KEY_ID_…`),
//! resent until a 2xx, and the simulator's ledger as the truth about money.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::Stack;
use system_tests::simulator::{Simulator, audit, reconcile};

fn wechatpay() -> Simulator {
    Simulator::from_env("E2E_WECHATPAY_SIMULATOR")
}

async fn wechat_payment(stack: &Stack, price: i64) -> (String, Value) {
    let product = stack.new_product("e2e-wechat", price, 10).await;
    let order = stack.new_order(&product, 1).await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let (status, payment) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": order_id, "paymentMethod": "WECHAT_PAY"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    (order_id, payment)
}

async fn payment_status(stack: &Stack, payment_id: &str) -> Value {
    let (_, payment) = stack
        .call(
            Method::GET,
            &format!("/payments/{payment_id}"),
            Some(&stack.user_token),
            None,
        )
        .await;
    payment["paymentStatus"].clone()
}

#[tokio::test]
async fn wechat_pay_from_code_url_to_paid_then_refunded_once_at_wechat_pay() {
    let stack = Stack::from_env();
    let sim = wechatpay();
    let (order_id, payment) = wechat_payment(&stack, 35_590).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(payment["provider"], "wechatpay");
    assert_eq!(
        payment["qrCode"],
        format!("weixin://wxpay/bizpayurl?pr={payment_id}"),
        "{payment}"
    );
    let trade = sim.ledger(&payment_id).await;
    assert_eq!(trade["total"], 35_590, "{trade}");
    assert_eq!(trade["attach"], order_id.as_str());
    assert!(
        trade["notify_url"]
            .as_str()
            .unwrap()
            .ends_with("/payments/notify/wechatpay"),
        "{trade}"
    );

    // Before the buyer pays: notifications that must change nothing.
    for variant in ["forged", "tampered", "stale", "unknown-serial"] {
        for answer in sim.notify(&payment_id, variant, 1).await {
            assert_eq!(answer["status"], 401, "{variant}: {answer}");
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["code"], "FAIL", "{variant}: {answer}");
        }
    }
    for variant in ["wrong-merchant", "undecryptable"] {
        for answer in sim.notify(&payment_id, variant, 1).await {
            assert_eq!(answer["status"], 400, "{variant}: {answer}");
        }
    }
    // Genuine but for another amount: acknowledged, recorded, no effect.
    for answer in sim.notify(&payment_id, "wrong-amount", 1).await {
        assert_eq!(answer["status"], 204, "{answer}");
    }
    assert_eq!(payment_status(&stack, &payment_id).await, "PENDING");

    // Paid, WeChat Pay's own notification lost; ten genuine copies at once.
    sim.pay(&payment_id, false).await;
    let copies =
        futures::future::join_all((0..10).map(|_| sim.notify(&payment_id, "genuine", 1))).await;
    for answer in copies.into_iter().flatten() {
        assert_eq!(answer["status"], 204, "{answer}");
        assert_eq!(answer["body"], "", "{answer}");
    }
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("APPLIED"), Some(&1), "{outcomes:?}");
    let duplicates = outcomes.get("DUPLICATE").copied().unwrap_or(0);
    assert!((9..=10).contains(&duplicates), "{outcomes:?}");
    assert_eq!(outcomes.get("AMOUNT_MISMATCH"), Some(&1), "{outcomes:?}");

    // Cancelled after payment: refunded at WeChat Pay once.
    for _ in 0..3 {
        let (status, body) = stack
            .call(
                Method::POST,
                &format!("/orders/{order_id}/cancel"),
                Some(&stack.user_token),
                None,
            )
            .await;
        assert!(
            status.is_success() || status == StatusCode::CONFLICT,
            "{status} {body}"
        );
    }
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "REFUNDED",
        )
        .await;
    let trade = sim.ledger(&payment_id).await;
    assert_eq!(trade["refunded"], 35_590, "{trade}");
    assert_eq!(trade["refunds"].as_object().unwrap().len(), 1, "{trade}");
    assert_eq!(payment_status(&stack, &payment_id).await, "REFUNDED");
}

#[tokio::test]
async fn wechat_pays_resends_stop_at_the_first_2xx() {
    let stack = Stack::from_env();
    let sim = wechatpay();
    let (order_id, payment) = wechat_payment(&stack, 1_990).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    sim.pay(&payment_id, true).await;
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.ledger(&payment_id).await["notify"] != "acknowledged" {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            sim.ledger(&payment_id).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_lost_wechat_notification_is_settled_by_reconciliation() {
    let stack = Stack::from_env();
    let sim = wechatpay();
    let (order_id, payment) = wechat_payment(&stack, 2_990).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    sim.pay(&payment_id, false).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while payment_status(&stack, &payment_id).await != "SUCCEEDED" {
        assert!(std::time::Instant::now() < deadline, "not settled");
        reconcile().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    assert_eq!(sim.ledger(&payment_id).await["deliveries"], json!([]));
}

#[tokio::test]
async fn an_expired_wechat_trade_is_closed_and_cannot_be_paid_late() {
    let stack = Stack::from_env();
    let sim = wechatpay();
    let (order_id, payment) = wechat_payment(&stack, 1_500).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(120),
            |o| o["orderStatus"] == "EXPIRED",
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.ledger(&payment_id).await["trade_state"] != "CLOSED" {
        assert!(
            std::time::Instant::now() < deadline,
            "not closed: {}",
            sim.ledger(&payment_id).await
        );
        reconcile().await;
    }
    assert_eq!(
        sim.try_late_payment(&payment_id).await,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn a_wechat_pay_outage_is_503_and_leaves_no_payment() {
    let stack = Stack::from_env();
    let sim = wechatpay();
    let product = stack.new_product("e2e-wechat-down", 700, 10).await;
    let order_id = stack.new_order(&product, 1).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.outage(true, &order_id).await;
    let (status, body) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": order_id, "paymentMethod": "WECHAT_PAY"})),
        )
        .await;
    sim.outage(false, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (_, order) = stack
        .call(
            Method::GET,
            &format!("/orders/{order_id}"),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert!(
        order.get("activePaymentId").is_none(),
        "half-created payment: {order}"
    );
}
