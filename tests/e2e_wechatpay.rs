//! WECHAT_PAY payments through the deployed local stack against the WeChat
//! Pay simulator (scripts/simulators/wechatpay.py): our connector's signed
//! calls and its checks of WeChat Pay's signed answers (by platform
//! certificate serial), the code_url, notifications encrypted with the
//! APIv3 key and signed by WeChat Pay's public key (by `PUB_KEY_ID_…`),
//! resent until a 2xx, and the simulator's ledger as the truth about money.

use serde_json::Value;
use system_tests::e2e::Stack;
use system_tests::simulator::{Simulator, Trial, audit};

/// WeChat Pay acknowledges with any 2xx; ours is 204 with no body.
fn acknowledged(answer: &Value) -> bool {
    answer["status"] == 204 && answer["body"] == ""
}

fn wechatpay(stack: &Stack) -> Trial<'_> {
    Trial {
        stack,
        sim: Simulator::from_env("E2E_WECHATPAY_SIMULATOR"),
        method: "WECHAT_PAY",
        acknowledged,
    }
}

#[tokio::test]
async fn wechat_pay_from_code_url_to_paid_then_refunded_once_at_wechat_pay() {
    let stack = Stack::from_env();
    let wechat = wechatpay(&stack);
    let sim = &wechat.sim;
    let (order_id, payment) = wechat.payment("e2e-wechat", 35_590).await;
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
    wechat
        .expect_notification(&payment_id, "wrong-amount", true)
        .await;
    assert_eq!(
        wechat.payment_now(&payment_id).await["paymentStatus"],
        "PENDING"
    );

    // Paid, the provider's own notification lost; then ten genuine copies.
    sim.pay(&payment_id, false).await;
    wechat.ten_copies_pay_once(&order_id, &payment_id).await;
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("AMOUNT_MISMATCH"), Some(&1), "{outcomes:?}");
    wechat
        .cancelled_and_refunded_once(&order_id, &payment_id, 35_590)
        .await;
}

#[tokio::test]
async fn wechat_pays_resends_stop_at_the_first_2xx() {
    let stack = Stack::from_env();
    wechatpay(&stack)
        .resends_stop_at_the_first_acknowledgement("e2e-wechat", 1_990)
        .await;
}

#[tokio::test]
async fn a_lost_wechat_notification_is_settled_by_reconciliation() {
    let stack = Stack::from_env();
    wechatpay(&stack)
        .lost_notification_settled_by_reconciliation("e2e-wechat", 2_990)
        .await;
}

#[tokio::test]
async fn an_expired_wechat_trade_is_closed_and_cannot_be_paid_late() {
    let stack = Stack::from_env();
    wechatpay(&stack)
        .expired_trade_closed("e2e-wechat", 1_500, |trade| {
            trade["trade_state"] == "CLOSED"
        })
        .await;
}

#[tokio::test]
async fn a_wechat_pay_outage_is_503_and_leaves_no_payment() {
    let stack = Stack::from_env();
    wechatpay(&stack)
        .outage_is_503_and_leaves_no_payment("e2e-wechat-down")
        .await;
}

#[tokio::test]
async fn a_refund_wechat_pay_cannot_pay_is_recorded_failed_once() {
    let stack = Stack::from_env();
    wechatpay(&stack)
        .failed_refund_recorded_once("e2e-wechatpay-refund", 4_200, "ABNORMAL")
        .await;
}
