//! Payments: the state machine, the stored shape, the API's and the
//! provider's messages, and the provider abstraction with its sandbox.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::secrets::Secret;
use crate::signature::{self, SignatureError};

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
}

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

    pub fn validate(&self) -> Result<(), ApiError> {
        if self.provider_transaction_id.is_empty() || self.provider_transaction_id.len() > 128 {
            return Err(ApiError::invalid_field(
                "providerTransactionId",
                "must be 1 to 128 characters",
            ));
        }
        if self.failure_reason.as_ref().is_some_and(|r| r.len() > 512) {
            return Err(ApiError::invalid_field(
                "failureReason",
                "must be at most 512 characters",
            ));
        }
        Ok(())
    }
}

pub fn payment_not_found(payment_id: &str) -> ApiError {
    ApiError::not_found(
        "PAYMENT_NOT_FOUND",
        format!("payment {payment_id:?} does not exist"),
    )
    .with("paymentId", payment_id)
}

/// Where the customer goes to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub payment_url: String,
    pub qr_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReceipt {
    pub provider_refund_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the payment provider refused: {0}")]
    Refused(String),
}

impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Unavailable(cause) => {
                tracing::warn!(%cause, "payment provider unavailable");
                ApiError::unavailable(
                    "the payment provider is temporarily unavailable, retry shortly",
                )
            }
            ProviderError::Refused(cause) => ApiError::conflict(
                "PAYMENT_REFUSED",
                format!("the payment provider refused: {cause}"),
            ),
        }
    }
}

/// Why a provider notification was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The notification is not from the provider (or is stale): the caller's fault.
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    /// We could not check it (the signing secret is unreadable): ours.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// A payment service provider (Alipay, WeChat Pay, a card acquirer).
///
/// Real providers start a checkout with an API call, report the result
/// asynchronously to `POST /payments/notify` with a signature, and refund
/// with another call; this trait is that contract.
pub trait PaymentProvider: Send + Sync {
    /// Starts a checkout for a new payment.
    fn checkout(
        &self,
        payment: &Payment,
    ) -> impl Future<Output = Result<Checkout, ProviderError>> + Send;

    /// Returns the money of a succeeded payment.
    fn refund(
        &self,
        payment: &Payment,
        reason: &str,
    ) -> impl Future<Output = Result<RefundReceipt, ProviderError>> + Send;

    /// Checks that a notification comes from the provider.
    fn verify_notification(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> impl Future<Output = Result<(), VerifyError>> + Send;
}

/// The project's own provider: checkouts point at a sandbox page, results
/// arrive through the same signed callback a real provider would send
/// (`scripts/local pay` plays the customer), refunds always succeed.
#[derive(Clone)]
pub struct SandboxProvider {
    secret: Secret,
    base_url: String,
}

impl std::fmt::Debug for SandboxProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SandboxProvider")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SandboxProvider {
    /// A provider with a known secret (tests, local tools).
    pub fn new(secret: impl Into<Vec<u8>>, base_url: impl Into<String>) -> Self {
        Self::with_secret(Secret::known(secret), base_url)
    }

    pub fn with_secret(secret: Secret, base_url: impl Into<String>) -> Self {
        Self {
            secret,
            base_url: base_url.into(),
        }
    }

    async fn secret(&self) -> Result<&[u8], ProviderError> {
        self.secret.get().await.map_err(|err| {
            tracing::error!(%err, "payment signing secret unavailable");
            ProviderError::Unavailable(format!("signing secret: {err}"))
        })
    }

    /// Signs a notification as this provider would (for tests).
    pub async fn sign(&self, timestamp: i64, body: &[u8]) -> Result<String, ProviderError> {
        Ok(signature::sign(self.secret().await?, timestamp, body))
    }
}

impl PaymentProvider for SandboxProvider {
    async fn checkout(&self, payment: &Payment) -> Result<Checkout, ProviderError> {
        let payment_url = format!(
            "{}/pay/{}",
            self.base_url.trim_end_matches('/'),
            payment.payment_id
        );
        let qr_code = payment.payment_method.is_wallet().then(|| {
            format!(
                "sandbox://{}/pay?paymentId={}&amount={}&currency={}",
                payment.payment_method.as_str().to_ascii_lowercase(),
                payment.payment_id,
                payment.amount,
                payment.currency
            )
        });
        Ok(Checkout {
            payment_url,
            qr_code,
        })
    }

    async fn refund(
        &self,
        payment: &Payment,
        _reason: &str,
    ) -> Result<RefundReceipt, ProviderError> {
        Ok(RefundReceipt {
            provider_refund_id: format!("sandbox-refund-{}", payment.payment_id),
        })
    }

    async fn verify_notification(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        Ok(signature::verify(
            self.secret().await?,
            signature,
            body,
            now,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::PaymentTransition as T;
    use super::*;
    use crate::http::parse_json;

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

    #[test]
    fn unknown_methods_name_the_field() {
        let e =
            parse_json::<InitiatePaymentRequest>(br#"{"orderId":"o1","paymentMethod":"BITCOIN"}"#)
                .unwrap_err();
        assert_eq!(e.details["field"], "paymentMethod");
        let e = parse_json::<InitiatePaymentRequest>(br#"{"orderId":"o1"}"#).unwrap_err();
        assert_eq!(e.details["field"], "paymentMethod");
    }

    fn payment(method: PaymentMethod) -> Payment {
        Payment {
            payment_id: "pay1".into(),
            order_id: "o1".into(),
            user_id: "u1".into(),
            amount: 1999,
            currency: "CNY".into(),
            payment_method: method,
            payment_status: Pending,
            payment_url: String::new(),
            qr_code: None,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: String::new(),
            provider_transaction_id: None,
            failure_reason: None,
        }
    }

    #[tokio::test]
    async fn sandbox_checkouts() {
        let provider = SandboxProvider::new("top-secret-value", "http://localhost/sandbox/");
        let wallet = provider
            .checkout(&payment(PaymentMethod::WechatPay))
            .await
            .unwrap();
        assert_eq!(wallet.payment_url, "http://localhost/sandbox/pay/pay1");
        assert_eq!(
            wallet.qr_code.as_deref(),
            Some("sandbox://wechat_pay/pay?paymentId=pay1&amount=1999&currency=CNY")
        );
        assert_eq!(
            provider
                .checkout(&payment(PaymentMethod::Card))
                .await
                .unwrap()
                .qr_code,
            None
        );
        assert!(
            !format!("{provider:?}").contains("top-secret-value"),
            "Debug must not print the secret"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sandbox_signs_what_it_verifies() {
        let provider = SandboxProvider::new("secret", "http://x");
        let header = provider.sign(100, b"{}").await.unwrap();
        assert!(
            provider
                .verify_notification(Some(&header), b"{}", 100)
                .await
                .is_ok()
        );
        assert!(matches!(
            provider
                .verify_notification(Some(&header), b"{ }", 100)
                .await,
            Err(VerifyError::BadSignature(_))
        ));
    }
}
