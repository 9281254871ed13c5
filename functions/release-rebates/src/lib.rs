//! Runs on a schedule: pending rebates of completed orders whose
//! after-sales window has closed become available. Safe to run twice at once and to race reversals: each
//! entry moves in a transaction conditional on it still being `PENDING`.

use adapters::rebates::Rebates;
use domain::clock;
use domain::rebates::ReleaseReport;

pub async fn sweep(rebates: &Rebates) -> Result<ReleaseReport, lambda_runtime::Error> {
    let report = rebates
        .release_due(clock::now(), adapters::runtime::sweep_out_of_time)
        .await?;
    tracing::info!(
        released = report.released,
        already_settled = report.already_settled,
        stopped_early = report.stopped_early,
        "rebate release sweep"
    );
    Ok(report)
}
