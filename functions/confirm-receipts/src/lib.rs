//! Runs every minute: orders shipped `AutoConfirmDays` ago whose buyer has
//! not confirmed receipt become `COMPLETED`, as if the buyer had (the
//! after-sales window then runs from completion).
//!
//! Safe to run twice at once and to race the buyer's own confirmation: each
//! order is completed by a transaction conditional on it being `SHIPPED`,
//! so it is completed, and told, once. A backlog larger than one run can
//! take is left to the next run.

use adapters::orders::{Orders, Transition};
use domain::clock;
use domain::orders::OrderTransition;
use serde::Serialize;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Orders this run completed.
    pub completed: usize,
    /// Due orders the buyer (or a concurrent run) completed first.
    pub already_completed: usize,
    /// Due orders not tried because the invocation was about to time out.
    pub left_for_next_run: usize,
}

pub async fn sweep(orders: &Orders, run_id: &str) -> Result<SweepReport, lambda_runtime::Error> {
    let due = orders.find_due_for_receipt(clock::now()).await?;
    let mut report = SweepReport::default();
    let mut failed = 0;
    for (tried, order) in due.iter().enumerate() {
        if adapters::runtime::sweep_out_of_time() {
            report.left_for_next_run = due.len() - tried;
            break;
        }
        match orders
            .apply_transition(order, OrderTransition::ConfirmReceipt, run_id)
            .await
        {
            Ok(Transition::Applied(_)) => report.completed += 1,
            Ok(Transition::LostRace(_) | Transition::AlreadyProcessed) => {
                report.already_completed += 1
            }
            Err(error) => {
                tracing::error!(order_id = %order.order_id, %error, "could not complete the order");
                failed += 1;
            }
        }
    }
    tracing::info!(due = due.len(), ?report, failed, "receipt sweep done");
    if failed > 0 {
        return Err(adapters::runtime::SweepIncomplete {
            failed,
            due: due.len(),
        }
        .into());
    }
    Ok(report)
}
