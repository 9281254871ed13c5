//! Runs every minute: orders still unpaid after their payment window become
//! `EXPIRED` and their reserved units return to stock.
//!
//! Safe to run twice at once and to race cancels and payments: each order is
//! released by a transaction conditional on its status and its `expiresAt`,
//! so every order is expired, and its stock released, at most once.

use serde::Serialize;
use shared::clock;
use shared::order::OrderTransition;
use shared::orders::{Orders, Transition};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Orders this run expired.
    pub expired: usize,
    /// Orders found due that something else settled first (paid, cancelled,
    /// or expired by a concurrent run).
    pub already_settled: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {due} due orders could not be expired; the next run retries them")]
pub struct SweepIncomplete {
    pub failed: usize,
    pub due: usize,
}

pub async fn sweep(orders: &Orders, run_id: &str) -> Result<SweepReport, lambda_runtime::Error> {
    let due = orders.find_expired(clock::now()).await?;
    let mut report = SweepReport::default();
    let mut failed = 0;
    for order in &due {
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
        failed,
        "expiry sweep"
    );
    if failed > 0 {
        return Err(SweepIncomplete {
            failed,
            due: due.len(),
        }
        .into());
    }
    Ok(report)
}
