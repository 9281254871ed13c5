//! The payouts queue's consumer: pays a withdrawal that became due
//! (`WithdrawalRequested` in `PROCESSING`, `WithdrawalApproved`) through
//! the provider of its channel, with the withdrawal id as the provider's
//! idempotency key.
//!
//! - Paid → `PAID`; refused for good → `FAILED`, the amount back in the
//!   available balance.
//! - An unknown outcome (a timeout, a 5xx) or a transfer still under way
//!   fails the message: SQS delivers it again after the queue's visibility
//!   timeout, and that attempt asks the provider what became of the
//!   transfer before sending it again, so it is paid once. After the
//!   queue's receive limit it waits in the DLQ (its alarm pages).

use adapters::consumer::{ConsumeError, handle_batch};
use adapters::withdrawals::{Payout, Withdrawals};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use domain::events::{Envelope, EventType};
use domain::withdrawals::{PayoutProvider, Withdrawal};

pub const CONSUMER: &str = "pay-withdrawals";

pub struct PayoutConsumer<P> {
    pub withdrawals: Withdrawals,
    pub provider: P,
}

impl<P: PayoutProvider> PayoutConsumer<P> {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_batch(CONSUMER, event, |envelope| self.handle(envelope)).await
    }

    pub async fn handle(&self, envelope: Envelope) -> Result<(), ConsumeError> {
        if !matches!(
            envelope.event_type,
            EventType::WithdrawalRequested | EventType::WithdrawalApproved
        ) {
            tracing::warn!(event_type = ?envelope.event_type, "event type not for this consumer (check the subscription's filter policy)");
            return Ok(());
        }
        let withdrawal: Withdrawal = envelope.data_as("a withdrawal")?;
        let id = withdrawal.withdrawal_id;
        // The stored withdrawal decides, not the event: a redelivered or
        // late one finds it paid, failed or still under review.
        match self.withdrawals.pay(&id, &self.provider).await? {
            Payout::Paid(paid) => {
                tracing::info!(withdrawal_id = %id, amount = paid.amount, reference = ?paid.provider_reference, "withdrawal paid");
            }
            Payout::Failed(failed) => {
                tracing::warn!(withdrawal_id = %id, reason = ?failed.failure_reason, "withdrawal payout failed; amount returned");
            }
            Payout::Nothing(status) => {
                tracing::info!(withdrawal_id = %id, status = status.as_str(), "no payout due");
            }
            Payout::InProgress => {
                return Err(ConsumeError::Missing(format!(
                    "the payout of withdrawal {id}'s outcome (still under way at the provider)"
                )));
            }
        }
        Ok(())
    }
}
