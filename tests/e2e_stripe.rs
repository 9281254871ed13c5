//! CARD payments through Stripe Checkout on the deployed local stack,
//! against the Stripe simulator (scripts/simulators/stripe.py): sessions
//! created with the secret key and an `Idempotency-Key`, webhooks signed
//! `t=…,v1=…` with the endpoint's secret (several `v1` while it rolls),
//! resent until a 2xx, and the simulator's ledger as the truth about money.
//!
//! `scripts/test` runs these after the other tests, once it has switched
//! the stack's CARD payments from the sandbox to Stripe by a stack update
//! (`CardPaymentProvider=stripe`), as an operator going live does. Their
//! names all start with `stripe_checkout_` so that the first pass can
//! leave them out.

use serde_json::Value;
use system_tests::e2e::Stack;
use system_tests::simulator::{Simulator, Trial, audit};

/// Stripe takes any 2xx; ours is 200 `{"received": true}`.
fn acknowledged(answer: &Value) -> bool {
    answer["status"] == 200
        && answer["body"]
            .as_str()
            .unwrap_or("")
            .contains("\"received\"")
}

fn stripe(stack: &Stack) -> Trial<'_> {
    Trial {
        stack,
        sim: Simulator::from_env("E2E_STRIPE_SIMULATOR"),
        method: "CARD",
        acknowledged,
    }
}

#[tokio::test]
async fn stripe_checkout_session_to_paid_then_refunded_once_at_stripe() {
    let stack = Stack::from_env();
    let stripe = stripe(&stack);
    let sim = &stripe.sim;
    let (order_id, payment) = stripe.payment("e2e-stripe", 25_900).await;
    let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(payment["provider"], "stripe", "{payment}");
    assert_eq!(
        payment["qrCode"],
        Value::Null,
        "cards pay on a page: {payment}"
    );
    let url = payment["paymentUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/pay/cs_test_", sim.url)),
        "{url}"
    );
    let session = sim.ledger(&payment_id).await;
    assert_eq!(session["amount_total"], 25_900, "{session}");
    assert_eq!(session["currency"], "cny", "{session}");
    assert_eq!(session["client_reference_id"], payment_id.as_str());
    assert_eq!(session["metadata"]["orderId"], order_id.as_str());
    assert_eq!(session["status"], "open");
    // The buyer's page is Stripe's.
    let page = reqwest::get(url).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.unwrap().contains("259.00 CNY"));

    // Paid at Stripe, its webhook lost; first the events that must change
    // nothing: not signed with the endpoint's secret, changed after
    // signing, signed 301 s ago (refused, 401); genuinely signed but from
    // live mode or another account (400).
    sim.pay(&payment_id, false).await;
    for variant in ["forged", "tampered", "stale"] {
        for answer in sim.notify(&payment_id, variant, 1).await {
            assert_eq!(answer["status"], 401, "{variant}: {answer}");
        }
    }
    for variant in ["wrong-mode", "wrong-account"] {
        for answer in sim.notify(&payment_id, variant, 1).await {
            assert_eq!(answer["status"], 400, "{variant}: {answer}");
        }
    }
    // Genuinely signed, for another amount: acknowledged (a resend would
    // never apply), recorded, no effect.
    stripe
        .expect_notification(&payment_id, "wrong-amount", true)
        .await;
    assert_eq!(
        stripe.payment_now(&payment_id).await["paymentStatus"],
        "PENDING"
    );

    // Signed during a secret's rotation (an old v1 beside the current one)
    // plus ten genuine copies at once: one transition.
    stripe
        .expect_notification(&payment_id, "rolled", true)
        .await;
    stripe.ten_copies_pay_once(&order_id, &payment_id).await;
    let outcomes = audit(&payment_id).await;
    assert_eq!(outcomes.get("AMOUNT_MISMATCH"), Some(&1), "{outcomes:?}");
    // Out of order: an `expired` event for the same session arriving after
    // the payment changes nothing.
    stripe
        .expect_notification(&payment_id, "expired-later", true)
        .await;
    stripe.wait_for_order(&order_id, "PAID", 5).await;
    stripe
        .cancelled_and_refunded_once(&order_id, &payment_id, 25_900)
        .await;
    let session = sim.ledger(&payment_id).await;
    let refund = session["refunds"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(
        refund["metadata"]["paymentId"],
        payment_id.as_str(),
        "{session}"
    );
}

#[tokio::test]
async fn stripe_checkout_resends_stop_at_the_first_2xx() {
    let stack = Stack::from_env();
    stripe(&stack)
        .resends_stop_at_the_first_acknowledgement("e2e-stripe", 1_990)
        .await;
}

#[tokio::test]
async fn stripe_checkout_lost_webhook_is_settled_by_reconciliation() {
    let stack = Stack::from_env();
    stripe(&stack)
        .lost_notification_settled_by_reconciliation("e2e-stripe", 2_990)
        .await;
}

#[tokio::test]
async fn stripe_checkout_session_of_an_expired_order_is_expired_at_stripe() {
    let stack = Stack::from_env();
    stripe(&stack)
        .expired_trade_closed("e2e-stripe", 1_500, |session| {
            session["status"] == "expired"
        })
        .await;
}

#[tokio::test]
async fn stripe_checkout_outage_is_503_and_leaves_no_payment() {
    let stack = Stack::from_env();
    stripe(&stack)
        .outage_is_503_and_leaves_no_payment("e2e-stripe-down")
        .await;
}

#[tokio::test]
async fn stripe_checkout_refund_stripe_cannot_pay_is_recorded_failed_once() {
    let stack = Stack::from_env();
    stripe(&stack)
        .failed_refund_recorded_once("e2e-stripe-refund", 4_200, "expired_or_canceled_card")
        .await;
}
