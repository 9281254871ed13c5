//! Runs every minute: orders still unpaid after their payment window become
//! `EXPIRED` and their reserved units return to stock.
//!
//! Safe to run twice at once and to race cancels and payments: each order is
//! released by a transaction conditional on its status and its `expiresAt`,
//! so every order is expired, and its stock released, at most once.
//! A backlog larger than one run can take (60 s) is left, order by whole
//! order, to the next run instead of the invocation timing out.
//!
//! The late-payment rule ([`Order::takes_payment_settled_at`]) decides, not
//! this sweep's timing: an order is expired only once its window and the
//! grace (`LATE_PAYMENT_GRACE_SECONDS`) have passed, and its pending payment
//! becomes `EXPIRED` in the same transaction. An order whose payment
//! succeeded in time is left alone: the order becomes `PAID` as soon as the
//! order-status consumer takes the payment's event (a redelivery, or a
//! redrive from its DLQ, can delay it). Expiring it meanwhile would release
//! its units and refund a customer for our own lag.

use adapters::orders::{Orders, Transition};
use adapters::payments::Payments;
use domain::clock;
use domain::orders::{Order, OrderTransition};
use domain::payments::PaymentStatus;
use serde::Serialize;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Orders this run expired.
    pub expired: usize,
    /// Orders found due that something else settled first (paid, cancelled,
    /// or expired by a concurrent run).
    pub already_settled: usize,
    /// Due orders left alone: their payment succeeded in time and its event
    /// is on its way.
    pub awaiting_payment_event: usize,
    /// Due orders not tried because the invocation was about to time out
    /// (a backlog); the next run takes them.
    pub left_for_next_run: usize,
}

pub async fn sweep(
    orders: &Orders,
    payments: &Payments,
    run_id: &str,
) -> Result<SweepReport, lambda_runtime::Error> {
    let now = clock::now();
    let due = orders.find_expired(now).await?;
    let mut report = SweepReport::default();
    let mut failed = 0;
    for (tried, order) in due.iter().enumerate() {
        if adapters::runtime::sweep_out_of_time() {
            report.left_for_next_run = due.len() - tried;
            break;
        }
        match paid_in_time(orders, payments, order).await {
            Ok(true) => {
                report.awaiting_payment_event += 1;
                continue;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(order_id = %order.order_id, %error, "could not read the order's payment");
                failed += 1;
                continue;
            }
        }
        match orders
            .apply_transition(order, OrderTransition::Expire, run_id)
            .await
        {
            Ok(Transition::Applied(_)) => report.expired += 1,
            Ok(Transition::LostRace(_) | Transition::AlreadyProcessed) => {
                report.already_settled += 1
            }
            Err(error) => {
                tracing::error!(order_id = %order.order_id, %error, "could not expire order");
                failed += 1;
            }
        }
    }
    tracing::info!(
        expired = report.expired,
        already_settled = report.already_settled,
        awaiting_payment_event = report.awaiting_payment_event,
        left_for_next_run = report.left_for_next_run,
        failed,
        "expiry sweep"
    );
    if failed > 0 {
        return Err(adapters::runtime::SweepIncomplete {
            failed,
            due: due.len(),
        }
        .into());
    }
    Ok(report)
}

/// Whether the order's payment succeeded in time to pay it.
async fn paid_in_time(
    orders: &Orders,
    payments: &Payments,
    order: &Order,
) -> Result<bool, adapters::db::DbError> {
    let Some(payment_id) = &order.active_payment_id else {
        return Ok(false);
    };
    Ok(payments.get(payment_id).await?.is_some_and(|p| {
        p.payment_status == PaymentStatus::Succeeded
            && order.takes_payment_settled_at(&p.updated_at, orders.late_payment_grace())
    }))
}
