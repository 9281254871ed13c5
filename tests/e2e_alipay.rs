//! ALIPAY payments through the deployed local stack against the Alipay
//! simulator (scripts/simulators/alipay.py), which speaks Alipay's protocol
//! with keys of its own: our connector's signed calls, its signed answers,
//! the pay page, Alipay-signed notifications resent until acknowledged, and
//! the simulator's ledger as the truth about money.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::Stack;
use system_tests::simulator::{Simulator, audit, reconcile};

fn alipay() -> Simulator {
    Simulator::from_env("E2E_ALIPAY_SIMULATOR")
}

fn simulator() -> String {
    alipay().url
}

async fn sim(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    alipay().call(method, path, body).await
}

async fn pay_at_alipay(payment_id: &str, notify: bool) {
    alipay().pay(payment_id, notify).await
}

async fn notifications(payment_id: &str, variant: &str, times: usize) -> Vec<Value> {
    alipay().notify(payment_id, variant, times).await
}

async fn ledger(payment_id: &str) -> Value {
    alipay().ledger(payment_id).await
}

async fn alipay_payment(stack: &Stack, price: i64) -> (String, Value) {
    let product = stack.new_product("e2e-alipay", price, 10).await;
    let order = stack.new_order(&product, 1).await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let (status, payment) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": order_id, "paymentMethod": "ALIPAY"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    (order_id, payment)
}

#[tokio::test]
async fn alipay_from_qr_code_to_paid_then_refunded_once_at_alipay() {
    let stack = Stack::from_env();
    let (order_id, payment) = alipay_payment(&stack, 16_800).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(payment["provider"], "alipay");
    assert_eq!(payment["amount"], 16_800);
    // The QR code is precreate's; the URL is the signed page-pay call.
    let qr = payment["qrCode"].as_str().unwrap();
    assert!(qr.starts_with(&format!("{}/qr/", simulator())), "{qr}");
    let url = payment["paymentUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/gateway.do?", simulator())),
        "{url}"
    );
    assert!(
        url.contains("method=alipay.trade.page.pay") && url.contains("&sign="),
        "{url}"
    );
    let trade = ledger(&payment_id).await;
    assert_eq!(
        trade["total_amount"], 16_800,
        "Alipay holds the amount in fen: {trade}"
    );
    assert_eq!(trade["trade_status"], "WAIT_BUYER_PAY");

    // The buyer opens the page-pay URL: Alipay's page, which verified our
    // signature on the way.
    let page = reqwest::get(url).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("¥168.00"));

    // Before the buyer pays, notifications claiming success that must
    // change nothing: not signed by Alipay,
    // changed after signing, unsigned, for another app or seller.
    for variant in [
        "forged",
        "tampered",
        "unsigned",
        "wrong-app",
        "wrong-seller",
    ] {
        for answer in notifications(&payment_id, variant, 1).await {
            assert_ne!(answer["body"], "success", "{variant}: {answer}");
            assert!(
                [400, 401].contains(&answer["status"].as_i64().unwrap()),
                "{variant}: {answer}"
            );
        }
    }
    // The sandbox's own signed callback cannot settle Alipay's payment.
    let sandbox_claim = json!({
        "paymentId": payment_id, "orderId": order_id, "paymentStatus": "SUCCESS",
        "amount": 16_800, "currency": "CNY", "providerTransactionId": "sandbox-forgery",
    })
    .to_string();
    let signature = adapters::payments::sandbox::sign(
        system_tests::required_env("E2E_PAYMENT_SECRET").as_bytes(),
        domain::clock::now().unix_timestamp(),
        sandbox_claim.as_bytes(),
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/payments/notify", stack.api_url))
        .header("content-type", "application/json")
        .header("x-payment-signature", signature)
        .body(sandbox_claim)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);

    // Signed by Alipay but for another amount: acknowledged (a resend would
    // never apply), recorded, and the payment stays pending.
    for answer in notifications(&payment_id, "wrong-amount", 1).await {
        assert_eq!(answer["body"], "success", "{answer}");
    }
    let (_, still) = stack
        .call(
            Method::GET,
            &format!("/payments/{payment_id}"),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(still["paymentStatus"], "PENDING", "{still}");

    // Paid at Alipay, its own notification lost; ten genuine copies at once
    // instead.
    pay_at_alipay(&payment_id, false).await;
    // One transition, every copy acknowledged.
    let copies =
        futures::future::join_all((0..10).map(|_| notifications(&payment_id, "genuine", 1))).await;
    for answer in copies.into_iter().flatten() {
        assert_eq!(answer["body"], "success", "{answer}");
    }
    let paid = stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    assert_eq!(paid["paidPaymentId"], payment_id.as_str());
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("APPLIED"), Some(&1), "{outcomes:?}");
    // Nine duplicates, or ten if the scheduled reconciliation settled it
    // first (it asks about every Alipay payment a second after creation on
    // the test stack).
    let duplicates = outcomes.get("DUPLICATE").copied().unwrap_or(0);
    assert!((9..=10).contains(&duplicates), "{outcomes:?}");
    assert_eq!(outcomes.get("AMOUNT_MISMATCH"), Some(&1), "{outcomes:?}");

    // Cancelled after payment: refunded through Alipay, once, however many
    // times the buyer asks.
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
    let trade = ledger(&payment_id).await;
    assert_eq!(trade["refunded"], 16_800, "{trade}");
    assert_eq!(trade["refunds"].as_object().unwrap().len(), 1, "{trade}");
    // A late genuine copy after the refund changes nothing.
    for answer in notifications(&payment_id, "genuine", 1).await {
        assert_eq!(answer["body"], "success", "{answer}");
    }
    let (_, payment) = stack
        .call(
            Method::GET,
            &format!("/payments/{payment_id}"),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(payment["paymentStatus"], "REFUNDED");
}

#[tokio::test]
async fn a_lost_notification_is_settled_by_reconciliation_once() {
    let stack = Stack::from_env();
    let (order_id, payment) = alipay_payment(&stack, 2_590).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    pay_at_alipay(&payment_id, false).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = reconcile().await;
        let (_, now) = stack
            .call(
                Method::GET,
                &format!("/payments/{payment_id}"),
                Some(&stack.user_token),
                None,
            )
            .await;
        if now["paymentStatus"] == "SUCCEEDED" {
            assert_eq!(
                now["providerTransactionId"],
                ledger(&payment_id).await["trade_no"]
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled: {now} {report}"
        );
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
    // Nothing was delivered: the sweep, not a notification, settled it.
    assert_eq!(ledger(&payment_id).await["deliveries"], json!([]));
    // A second run and the notification arriving after all change nothing.
    reconcile().await;
    for answer in notifications(&payment_id, "genuine", 2).await {
        assert_eq!(answer["body"], "success", "{answer}");
    }
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("APPLIED"), Some(&1), "{outcomes:?}");
}

#[tokio::test]
async fn an_expired_trade_is_closed_at_alipay_and_cannot_be_paid_late() {
    let stack = Stack::from_env();
    let (order_id, payment) = alipay_payment(&stack, 1_200).await;
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
    while ledger(&payment_id).await["trade_status"] != "TRADE_CLOSED" {
        assert!(
            std::time::Instant::now() < deadline,
            "not closed: {}",
            ledger(&payment_id).await
        );
        reconcile().await;
    }
    let late = reqwest::Client::new()
        .post(format!("{}/pay/{payment_id}", simulator()))
        .form(&[("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        late.status(),
        StatusCode::CONFLICT,
        "a late payment went through"
    );
}

#[tokio::test]
async fn alipays_resends_stop_at_the_first_success() {
    let stack = Stack::from_env();
    let (order_id, payment) = alipay_payment(&stack, 990).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    pay_at_alipay(&payment_id, true).await;
    stack
        .wait_for(
            &format!("/orders/{order_id}"),
            &stack.user_token,
            Duration::from_secs(60),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    let trade = ledger(&payment_id).await;
    assert_eq!(trade["notify"], "acknowledged", "{trade}");
    let deliveries = trade["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.last().unwrap()["body"], "success", "{trade}");
}

#[tokio::test]
async fn an_alipay_outage_is_503_with_retry_after_and_leaves_no_payment() {
    let stack = Stack::from_env();
    let product = stack.new_product("e2e-alipay-down", 500, 10).await;
    let order = stack.new_order(&product, 1).await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    sim(
        Method::POST,
        "/_sim/outage",
        Some(json!({"on": true, "matching": order_id})),
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/payments", stack.api_url))
        .bearer_auth(&stack.user_token)
        .json(&json!({"orderId": order_id, "paymentMethod": "ALIPAY"}))
        .send()
        .await
        .unwrap();
    sim(Method::POST, "/_sim/outage", Some(json!({"on": false}))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
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
    // Alipay is back: the same request now starts the payment.
    let (status, payment) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": order_id, "paymentMethod": "ALIPAY"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
}
