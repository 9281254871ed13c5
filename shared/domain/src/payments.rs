//! Payments: the state machine, the stored shape, the API's and the
//! provider's messages, and the provider abstraction with its sandbox.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, KeyReused, RateLimited, StoreError};
use crate::orders::OrderStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethod {
    Alipay,
    WechatPay,
    Card,
}

impl PaymentMethod {
    /// Wallets are paid by scanning a QR code; cards on a web page.
    pub fn is_wallet(self) -> bool {
        matches!(self, PaymentMethod::Alipay | PaymentMethod::WechatPay)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Alipay => "ALIPAY",
            PaymentMethod::WechatPay => "WECHAT_PAY",
            PaymentMethod::Card => "CARD",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    /// Never completed: the order's window closed, or a newer payment with
    /// another method replaced it.
    Expired,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentTransition {
    Succeed,
    Fail,
    Expire,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment in {from:?} cannot take {transition:?}")]
pub struct ForbiddenPaymentTransition {
    pub from: PaymentStatus,
    pub transition: PaymentTransition,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Expired,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Expired => "EXPIRED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    /// Whether a callback reporting `transition` says what this status
    /// already records (a provider's resend, not news).
    pub fn reports(self, transition: PaymentTransition) -> bool {
        matches!(
            (self, transition),
            (
                PaymentStatus::Succeeded | PaymentStatus::Refunded,
                PaymentTransition::Succeed
            ) | (PaymentStatus::Failed, PaymentTransition::Fail)
        )
    }

    pub fn apply(
        self,
        transition: PaymentTransition,
    ) -> Result<PaymentStatus, ForbiddenPaymentTransition> {
        use PaymentStatus::*;
        use PaymentTransition as T;
        match (self, transition) {
            (Pending, T::Succeed) => Ok(Succeeded),
            (Pending, T::Fail) => Ok(Failed),
            (Pending, T::Expire) => Ok(Expired),
            // A provider's success is the truth about money: a buyer may pay
            // after a failed attempt within the same trade, or after the
            // payment was replaced or its order expired. It is recorded, and
            // the order-status consumer pays the order or refunds it.
            (Failed | Expired, T::Succeed) => Ok(Succeeded),
            (Succeeded, T::Refund) => Ok(Refunded),
            (from, transition) => Err(ForbiddenPaymentTransition { from, transition }),
        }
    }
}

/// A payment as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: PaymentMethod,
    pub payment_status: PaymentStatus,
    pub payment_url: String,
    pub qr_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The provider that took it (`sandbox`, `alipay`, `wechatpay`,
    /// `stripe`): its refunds, queries and closing go there, whatever the
    /// configuration says later. Payments from before providers were
    /// configurable were all the sandbox's.
    #[serde(default = "sandbox")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<String>,
    /// The refunds asked of the provider, by refund id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refunds: BTreeMap<String, Refund>,
}

/// Where a refund asked of the provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    /// Accepted by the provider, its result still to come (WeChat Pay's
    /// PROCESSING, Stripe's pending): it reports it later.
    Pending,
    Succeeded,
    /// The provider could not return the money (a closed card or account):
    /// an operator has to, by other means.
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "PENDING",
            RefundStatus::Succeeded => "SUCCEEDED",
            RefundStatus::Failed => "FAILED",
        }
    }
}

/// A refund of a payment, as the payment records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub refund_id: String,
    pub amount: i64,
    pub refund_status: RefundStatus,
    pub provider_refund_id: String,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl Refund {
    /// The record of a refund the provider has just accepted.
    pub fn accepted(order: &RefundOrder, receipt: &RefundReceipt, now: &str) -> Self {
        Self {
            refund_id: order.refund_id.clone(),
            amount: order.amount,
            refund_status: receipt.refund_status,
            provider_refund_id: receipt.provider_refund_id.clone(),
            requested_at: now.to_owned(),
            settled_at: (receipt.refund_status != RefundStatus::Pending).then(|| now.to_owned()),
            failure_reason: None,
        }
    }
}

fn sandbox() -> String {
    SANDBOX.to_owned()
}

/// The name of the project's own provider.
pub const SANDBOX: &str = "sandbox";

/// The body of `POST /payments`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitiatePaymentRequest {
    pub order_id: String,
    pub payment_method: PaymentMethod,
    /// Never trusted: if present it must be the caller.
    #[serde(default, skip_serializing)]
    pub user_id: Option<String>,
}

/// What the provider reports in its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotifiedResult {
    Success,
    Failed,
}

/// The body of `POST /payments/notify`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderNotification {
    pub payment_id: String,
    pub order_id: String,
    pub payment_status: NotifiedResult,
    pub amount: i64,
    pub currency: String,
    pub provider_transaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl ProviderNotification {
    pub fn transition(&self) -> PaymentTransition {
        match self.payment_status {
            NotifiedResult::Success => PaymentTransition::Succeed,
            NotifiedResult::Failed => PaymentTransition::Fail,
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.provider_transaction_id.is_empty() || self.provider_transaction_id.len() > 128 {
            return Err(FieldError::new(
                "providerTransactionId",
                "must be 1 to 128 characters",
            ));
        }
        if self.failure_reason.as_ref().is_some_and(|r| r.len() > 512) {
            return Err(FieldError::new(
                "failureReason",
                "must be at most 512 characters",
            ));
        }
        Ok(())
    }
}

/// Where the customer goes to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub payment_url: String,
    pub qr_code: Option<String>,
    /// The provider's own id for the checkout when it is not our payment id
    /// (Stripe's Checkout Session): queries and closing need it.
    pub provider_reference: Option<String>,
}

/// A refund to make at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    /// Ours, and the provider's idempotency key (`out_request_no`,
    /// `out_refund_no`, `Idempotency-Key`): asking again with the same id
    /// refunds once.
    pub refund_id: String,
    /// Minor units, at most the payment's amount.
    pub amount: i64,
    pub reason: String,
}

impl RefundOrder {
    /// The whole payment back (a cancelled paid order, a success after its
    /// order expired): one refund per payment, so its id is the payment's.
    pub fn whole(payment: &Payment, reason: &str) -> Self {
        Self {
            refund_id: format!("{}-whole", payment.payment_id),
            amount: payment.amount,
            reason: reason.to_owned(),
        }
    }
}

/// What the provider answered to a refund it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReceipt {
    pub provider_refund_id: String,
    /// `Succeeded` when the money is back already; `Pending` when the
    /// provider reports the result later.
    pub refund_status: RefundStatus,
}

/// A provider's later word on a refund it had accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResult {
    pub payment_id: String,
    /// Ours (`out_refund_no`, the refund's metadata at Stripe).
    pub refund_id: String,
    pub provider_refund_id: String,
    /// `Succeeded` or `Failed`.
    pub refund_status: RefundStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// What a provider says about a payment when asked (reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// Paid: the same facts a success notification carries.
    Paid {
        provider_transaction_id: String,
        amount: i64,
        currency: String,
    },
    /// Not paid yet: the buyer may still pay.
    Open,
    /// Closed unpaid, or never created at the provider.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the payment provider refused: {0}")]
    Refused(String),
    /// This deployment has no credentials for the provider.
    #[error("the payment provider is not configured: {0}")]
    NotConfigured(String),
}

/// Why a payment operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("payment {0:?} does not exist")]
    NotFound(String),
    #[error("order {0:?} does not exist")]
    OrderNotFound(String),
    #[error("order {order_id} is {}: {why}", .status.as_str())]
    OrderNotPayable {
        order_id: String,
        status: OrderStatus,
        why: &'static str,
    },
    /// The order changed (another payment started, or it stopped being
    /// payable) while this one was being created: look again and retry.
    #[error("order {order_id} changed while the payment was being created")]
    OrderChanged { order_id: String },
    #[error("payment {payment_id} is {}", .status.as_str())]
    NotRefundable {
        payment_id: String,
        status: PaymentStatus,
    },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    KeyReused(#[from] KeyReused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PaymentError {
    pub fn order_not_payable(order: &crate::orders::Order, why: &'static str) -> Self {
        Self::OrderNotPayable {
            order_id: order.order_id.clone(),
            status: order.order_status,
            why,
        }
    }
}

/// A provider's notification once its checks hold (signature, timestamp,
/// merchant), in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedCallback {
    /// A trade's result, for the payment it names (its `order_id` is filled
    /// in from that payment: providers echo only their own trade number).
    Payment {
        notification_id: String,
        notification: ProviderNotification,
    },
    /// The result of a refund the provider had accepted as pending.
    Refund {
        notification_id: String,
        result: RefundResult,
    },
    /// Genuine but about nothing we act on (an unpaid or closed trade, a
    /// refund still in progress): acknowledged so that it is not resent.
    Ignored {
        notification_id: String,
        why: String,
    },
}

/// Why a provider notification was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The notification is not from the provider (or is stale): the caller's fault.
    #[error("{0}")]
    BadSignature(String),
    /// Signed by the provider but not for us or not what we asked: another
    /// merchant, app or account, or a field that does not read.
    #[error("{0}")]
    Foreign(String),
    /// We could not check it (the signing secret is unreadable): ours.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// A payment service provider (Alipay, WeChat Pay, Stripe, the sandbox).
///
/// Providers start a checkout with an API call, report the result
/// asynchronously to their own callback route with their own signature (each
/// callback function verifies its provider's), answer queries, close unpaid
/// trades and refund; this trait is the part every payment path shares.
pub trait PaymentProvider: Send + Sync {
    /// The provider that takes payments by `method`, recorded on each
    /// payment (`Payment::provider`).
    fn name_for(&self, method: PaymentMethod) -> &'static str;

    /// Starts a checkout for a new payment. `Unavailable` leaves nothing to
    /// undo: the payment is written only after this returns.
    /// `callback_base` is the API's public URL (`https://host[/stage]`);
    /// providers that take a notification URL per trade get
    /// `{callback_base}/payments/notify/{provider}`.
    fn checkout(
        &self,
        payment: &Payment,
        callback_base: &str,
    ) -> impl Future<Output = Result<Checkout, ProviderError>> + Send;

    /// Returns money of a succeeded payment; the same `refund_id` again
    /// refunds once.
    fn refund(
        &self,
        payment: &Payment,
        refund: &RefundOrder,
    ) -> impl Future<Output = Result<RefundReceipt, ProviderError>> + Send;

    /// Asks the provider what became of a payment.
    fn query(
        &self,
        payment: &Payment,
    ) -> impl Future<Output = Result<TradeState, ProviderError>> + Send;

    /// Closes an unpaid trade so that it can no longer be paid.
    fn close(&self, payment: &Payment) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::PaymentTransition as T;
    use super::*;

    #[test]
    fn payment_transitions() {
        let allowed = [
            (Pending, T::Succeed, Succeeded),
            (Pending, T::Fail, Failed),
            (Pending, T::Expire, Expired),
            (Failed, T::Succeed, Succeeded),
            (Expired, T::Succeed, Succeeded),
            (Succeeded, T::Refund, Refunded),
        ];
        for from in PaymentStatus::ALL {
            for t in [T::Succeed, T::Fail, T::Expire, T::Refund] {
                match allowed.iter().find(|(f, tt, _)| *f == from && *tt == t) {
                    Some((_, _, to)) => assert_eq!(from.apply(t), Ok(*to)),
                    None => assert!(from.apply(t).is_err(), "{from:?} --{t:?}-->"),
                }
            }
        }
    }

    #[test]
    fn names_match_the_contract() {
        for s in PaymentStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for m in [
            PaymentMethod::Alipay,
            PaymentMethod::WechatPay,
            PaymentMethod::Card,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
    }
}
