//! The project's own payment provider, for local play and tests: checkouts
//! point at a sandbox page, and results come back through a callback signed
//! with Stripe's scheme ([`super::webhook_signature`]) under our own header.

use domain::payments::{
    Checkout, Payment, PaymentMethod, PaymentProvider, ProviderError, RefundOrder, RefundReceipt,
    RefundStatus, SANDBOX, TradeState, VerifyError,
};

pub use super::webhook_signature::sign;
use super::webhook_signature::verify;
use crate::secrets::Credentials;

pub const HEADER: &str = "x-payment-signature";

/// The signing secret is the parameter's bytes as they are.
pub fn raw(bytes: &[u8]) -> Result<Vec<u8>, String> {
    Ok(bytes.to_vec())
}

/// The project's own provider: checkouts point at a sandbox page, results
/// arrive through the same signed callback a real provider would send
/// (`scripts/local pay` plays the customer), refunds always succeed.
#[derive(Clone)]
pub struct SandboxProvider {
    /// Shared by clones: one read serves them all. Only the function that
    /// verifies the sandbox's callbacks holds it: starting, refunding and
    /// closing sandbox payments sign nothing (issue 26.6).
    secret: Option<std::sync::Arc<Credentials<Vec<u8>>>>,
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
        Self::with_secret(Credentials::known(secret, raw), base_url)
    }

    /// The sandbox provider as a deployed function uses it. Its signing
    /// secret is the SSM parameter named by `PAYMENT_SIGNING_SECRET_PARAM`
    /// (read when a callback first needs it) in the function that verifies
    /// callbacks; the others are given no such name and never read it.
    pub fn from_env(config: &aws_config::SdkConfig) -> Self {
        let base_url = std::env::var("PAYMENT_SANDBOX_URL")
            .unwrap_or_else(|_| "https://sandbox.pay.example".into());
        let secret = std::env::var("PAYMENT_SIGNING_SECRET_PARAM")
            .ok()
            .filter(|name| !name.is_empty())
            .map(|name| std::sync::Arc::new(Credentials::in_ssm(config, name, raw)));
        Self { secret, base_url }
    }

    pub fn with_secret(secret: Credentials<Vec<u8>>, base_url: impl Into<String>) -> Self {
        Self {
            secret: Some(std::sync::Arc::new(secret)),
            base_url: base_url.into(),
        }
    }

    async fn secret(&self) -> Result<std::sync::Arc<Vec<u8>>, ProviderError> {
        let Some(secret) = &self.secret else {
            return Err(ProviderError::NotConfigured(
                "this function holds no sandbox signing secret".into(),
            ));
        };
        secret.get().await.map_err(|err| {
            tracing::error!(%err, "payment signing secret unavailable");
            ProviderError::Unavailable(format!("signing secret: {err}"))
        })
    }

    /// Signs a notification as this provider would (for tests).
    pub async fn sign(&self, timestamp: i64, body: &[u8]) -> Result<String, ProviderError> {
        Ok(sign(&self.secret().await?, timestamp, body))
    }
}

impl SandboxProvider {
    /// Checks that a callback to `POST /payments/notify` was signed with
    /// the sandbox's secret.
    pub async fn verify_notification(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        verify(&self.secret().await?, signature, body, now)
            .map_err(|e| VerifyError::BadSignature(e.to_string()))
    }
}

impl PaymentProvider for SandboxProvider {
    fn name_for(&self, _method: PaymentMethod) -> &'static str {
        SANDBOX
    }

    /// The sandbox's callbacks go to `POST /payments/notify`, wherever
    /// `scripts/local pay` sends them.
    async fn checkout(
        &self,
        payment: &Payment,
        _callback_base: &str,
    ) -> Result<Checkout, ProviderError> {
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
            provider_reference: None,
        })
    }

    async fn refund(
        &self,
        _payment: &Payment,
        refund: &RefundOrder,
    ) -> Result<RefundReceipt, ProviderError> {
        Ok(RefundReceipt {
            provider_refund_id: format!("sandbox-refund-{}", refund.refund_id),
            refund_status: RefundStatus::Succeeded,
        })
    }

    /// The sandbox keeps no ledger: what it reports arrives only by
    /// callback, so a query learns nothing and reconciliation leaves its
    /// payments to expire.
    async fn query(&self, _payment: &Payment) -> Result<TradeState, ProviderError> {
        Ok(TradeState::Open)
    }

    async fn close(&self, _payment: &Payment) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// The sandbox pays every payout at once: local play has no money to move.
impl domain::withdrawals::PayoutProvider for SandboxProvider {
    async fn transfer(
        &self,
        payout: &domain::withdrawals::PayoutOrder,
    ) -> Result<domain::withdrawals::PayoutState, ProviderError> {
        Ok(domain::withdrawals::PayoutState::Paid {
            reference: format!("sandbox-{}", payout.withdrawal_id),
        })
    }

    async fn query_transfer(
        &self,
        payout: &domain::withdrawals::PayoutOrder,
    ) -> Result<Option<domain::withdrawals::PayoutState>, ProviderError> {
        self.transfer(payout).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use domain::payments::{PaymentMethod, PaymentStatus::Pending};

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
            provider: SANDBOX.into(),
            provider_reference: None,
            refunds: Default::default(),
        }
    }

    #[tokio::test]
    async fn sandbox_checkouts() {
        let provider = SandboxProvider::new("top-secret-value", "http://localhost/sandbox/");
        let wallet = provider
            .checkout(&payment(PaymentMethod::WechatPay), "https://api")
            .await
            .unwrap();
        assert_eq!(wallet.payment_url, "http://localhost/sandbox/pay/pay1");
        assert_eq!(
            wallet.qr_code.as_deref(),
            Some("sandbox://wechat_pay/pay?paymentId=pay1&amount=1999&currency=CNY")
        );
        assert_eq!(
            provider
                .checkout(&payment(PaymentMethod::Card), "https://api")
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
