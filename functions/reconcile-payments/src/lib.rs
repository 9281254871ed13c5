//! Runs every minute: real providers lose and delay notifications, so each
//! of their payments that no notification settled is asked about, from
//! `RECONCILE_AFTER_SECONDS` after its creation on.
//!
//! - Paid at the provider: settled through the same exactly-once path as a
//!   callback (`Payments::record_callback`): a notification arriving too, or
//!   a second run, is a duplicate. The late-payment rule then decides
//!   whether the order is paid or refunded, as for a callback.
//! - Still open while its order can be paid: asked again a minute later.
//! - Open after its order's window, or for a payment that was replaced or
//!   expired: closed at the provider, so that nobody can pay it late.
//! - Closed at the provider: out of the index.
//!
//! Safe to run twice at once: every effect is conditional or idempotent at
//! the provider (queries and closes by `out_trade_no`).

use adapters::payments::{CallbackOutcome, NextCheck, Payments};
use domain::clock;
use domain::payments::{
    NotifiedResult, Payment, PaymentProvider, PaymentStatus, ProviderNotification, TradeState,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How soon an open trade is asked about again.
const RECHECK: time::Duration = time::Duration::minutes(1);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Payments asked about.
    pub queried: usize,
    /// Found paid at the provider and settled here by this run.
    pub settled: usize,
    /// Found paid and already settled (a notification came first).
    pub already_settled: usize,
    /// Closed at the provider: their order could no longer be paid.
    pub closed: usize,
    /// Still open and payable: asked again later.
    pub still_open: usize,
    /// The provider could not be asked or answered oddly: asked again later.
    pub failed: usize,
    /// Not tried: the invocation was about to time out.
    pub left_for_next_run: usize,
}

pub async fn sweep(
    payments: &Payments,
    provider: &impl PaymentProvider,
    run_id: &str,
) -> Result<ReconcileReport, lambda_runtime::Error> {
    let now = clock::now();
    let due = payments.due_for_reconciliation(now).await?;
    let mut report = ReconcileReport::default();
    for (tried, payment) in due.iter().enumerate() {
        if adapters::runtime::sweep_out_of_time() {
            report.left_for_next_run = due.len() - tried;
            break;
        }
        report.queried += 1;
        let next = match reconcile(payments, provider, payment, now, run_id, &mut report).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(payment_id = %payment.payment_id, %error, "reconciliation failed; retried later");
                report.failed += 1;
                NextCheck::At(clock::rfc3339(now + RECHECK))
            }
        };
        payments
            .schedule_reconciliation(&payment.payment_id, next)
            .await?;
    }
    tracing::info!(report = ?report, "reconciliation sweep");
    Ok(report)
}

async fn reconcile(
    payments: &Payments,
    provider: &impl PaymentProvider,
    payment: &Payment,
    now: OffsetDateTime,
    run_id: &str,
    report: &mut ReconcileReport,
) -> Result<NextCheck, Box<dyn std::error::Error + Send + Sync>> {
    // The index is eventually consistent: judge what the table holds now.
    let Some(payment) = payments.get(&payment.payment_id).await? else {
        return Ok(NextCheck::Never);
    };
    match provider.query(&payment).await? {
        TradeState::Paid {
            provider_transaction_id,
            amount,
            currency,
        } => {
            let notification = ProviderNotification {
                payment_id: payment.payment_id.clone(),
                order_id: payment.order_id.clone(),
                payment_status: NotifiedResult::Success,
                amount,
                currency,
                provider_transaction_id,
                failure_reason: None,
            };
            match payments
                .record_callback(&payment, &notification, run_id)
                .await?
            {
                CallbackOutcome::Applied => {
                    tracing::warn!(payment_id = %payment.payment_id, "a payment no notification settled was found paid");
                    report.settled += 1;
                }
                outcome => {
                    tracing::info!(payment_id = %payment.payment_id, outcome = outcome.as_str(), "found paid, already settled");
                    report.already_settled += 1;
                }
            }
            Ok(NextCheck::Never)
        }
        TradeState::Open if payable(&payment, now) => {
            report.still_open += 1;
            Ok(NextCheck::At(clock::rfc3339(now + RECHECK)))
        }
        TradeState::Open => {
            // A close that fails because the buyer paid in between is an
            // error here: the next run's query finds it paid.
            provider.close(&payment).await?;
            report.closed += 1;
            Ok(NextCheck::Never)
        }
        TradeState::Closed if payable(&payment, now) => {
            // Closed at the provider (the buyer gave up) while the order
            // may still take another payment: nothing to settle here; the
            // expiry sweep ends it with its order.
            report.still_open += 1;
            Ok(NextCheck::At(clock::rfc3339(now + RECHECK)))
        }
        TradeState::Closed => Ok(NextCheck::Never),
    }
}

/// Whether the buyer may still pay: the payment is pending and its order's
/// window is open.
fn payable(payment: &Payment, now: OffsetDateTime) -> bool {
    payment.payment_status == PaymentStatus::Pending
        && OffsetDateTime::parse(&payment.expires_at, &Rfc3339).is_ok_and(|until| now < until)
}
