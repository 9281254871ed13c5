//! ALIPAY payments through the deployed local stack against the Alipay
//! simulator (scripts/simulators/alipay.py), which speaks Alipay's protocol
//! with keys of its own: our connector's signed calls, its signed answers,
//! the pay page, Alipay-signed notifications resent until acknowledged, and
//! the simulator's ledger as the truth about money.

use reqwest::StatusCode;
use serde_json::{Value, json};
use system_tests::e2e::Stack;
use system_tests::simulator::{Simulator, Trial, audit};

/// Alipay takes only the literal body `success` as an acknowledgement.
fn acknowledged(answer: &Value) -> bool {
    answer["body"] == "success"
}

fn alipay(stack: &Stack) -> Trial<'_> {
    Trial {
        stack,
        sim: Simulator::from_env("E2E_ALIPAY_SIMULATOR"),
        method: "ALIPAY",
        acknowledged,
    }
}

#[tokio::test]
async fn alipay_from_qr_code_to_paid_then_refunded_once_at_alipay() {
    let stack = Stack::from_env();
    let alipay = alipay(&stack);
    let sim = &alipay.sim;
    let (order_id, payment) = alipay.payment("e2e-alipay", 16_800).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(payment["provider"], "alipay");
    assert_eq!(payment["amount"], 16_800);
    // The QR code is precreate's; the URL is the signed page-pay call.
    let qr = payment["qrCode"].as_str().unwrap();
    assert!(qr.starts_with(&format!("{}/qr/", sim.url)), "{qr}");
    let url = payment["paymentUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/gateway.do?", sim.url)),
        "{url}"
    );
    assert!(
        url.contains("method=alipay.trade.page.pay") && url.contains("&sign="),
        "{url}"
    );
    let trade = sim.ledger(&payment_id).await;
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
        for answer in sim.notify(&payment_id, variant, 1).await {
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
    alipay
        .expect_notification(&payment_id, "wrong-amount", true)
        .await;
    assert_eq!(
        alipay.payment_now(&payment_id).await["paymentStatus"],
        "PENDING"
    );

    // Paid, the provider's own notification lost; then ten genuine copies.
    sim.pay(&payment_id, false).await;
    alipay.ten_copies_pay_once(&order_id, &payment_id).await;
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("AMOUNT_MISMATCH"), Some(&1), "{outcomes:?}");
    alipay
        .cancelled_and_refunded_once(&order_id, &payment_id, 16_800)
        .await;
}

#[tokio::test]
async fn a_lost_notification_is_settled_by_reconciliation_once() {
    let stack = Stack::from_env();
    alipay(&stack)
        .lost_notification_settled_by_reconciliation("e2e-alipay", 2_590)
        .await;
}

#[tokio::test]
async fn an_expired_trade_is_closed_at_alipay_and_cannot_be_paid_late() {
    let stack = Stack::from_env();
    alipay(&stack)
        .expired_trade_closed("e2e-alipay", 1_200, |trade| {
            trade["trade_status"] == "TRADE_CLOSED"
        })
        .await;
}

#[tokio::test]
async fn alipays_resends_stop_at_the_first_success() {
    let stack = Stack::from_env();
    alipay(&stack)
        .resends_stop_at_the_first_acknowledgement("e2e-alipay", 990)
        .await;
}

#[tokio::test]
async fn an_alipay_outage_is_503_with_retry_after_and_leaves_no_payment() {
    let stack = Stack::from_env();
    alipay(&stack)
        .outage_is_503_and_leaves_no_payment("e2e-alipay-down")
        .await;
}
