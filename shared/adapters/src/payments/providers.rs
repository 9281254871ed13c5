//! The providers a deployment uses, one per payment method by configuration
//! (`PAYMENT_PROVIDER_ALIPAY`, `PAYMENT_PROVIDER_WECHAT_PAY`,
//! `PAYMENT_PROVIDER_CARD`: `sandbox` unless set). A payment's refunds,
//! queries and closing go to the provider recorded on it, so switching a
//! method to another provider leaves earlier payments with theirs.

use domain::payments::{
    Checkout, Payment, PaymentMethod, PaymentProvider, ProviderError, RefundOrder, RefundReceipt,
    SANDBOX, TradeState,
};

use domain::withdrawals::{Channel, PayoutOrder, PayoutProvider, PayoutState};

use super::alipay::{self, AlipayProvider};
use super::sandbox::SandboxProvider;
use super::stripe::{self, StripeProvider};
use super::wechatpay::{self, WechatPayProvider};

#[derive(Debug, thiserror::Error)]
pub enum ProvidersError {
    #[error("{setting} is {value:?}: one of {allowed}")]
    Unknown {
        setting: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error(transparent)]
    Missing(#[from] crate::config::MissingSetting),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

#[derive(Debug)]
pub struct Providers {
    sandbox: SandboxProvider,
    alipay: Option<AlipayProvider>,
    wechatpay: Option<WechatPayProvider>,
    stripe: Option<StripeProvider>,
    /// The provider of each method: Alipay, WeChat Pay, card.
    chosen: [&'static str; 3],
}

fn slot(method: PaymentMethod) -> usize {
    match method {
        PaymentMethod::Alipay => 0,
        PaymentMethod::WechatPay => 1,
        PaymentMethod::Card => 2,
    }
}

impl Providers {
    pub fn new(
        sandbox: SandboxProvider,
        alipay: Option<AlipayProvider>,
        wechatpay: Option<WechatPayProvider>,
        stripe: Option<StripeProvider>,
        chosen: [&'static str; 3],
    ) -> Self {
        Self {
            sandbox,
            alipay,
            wechatpay,
            stripe,
            chosen,
        }
    }

    /// The providers as configured for a deployed function. A provider's
    /// credentials are needed when any method uses it, or when they are set
    /// (payments it took earlier are still refunded through it).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, ProvidersError> {
        Self::configured(config, true)
    }

    /// The providers a payout can go through (Alipay's, WeChat Pay's, the
    /// sandbox): a card provider is never built, so the payout function
    /// needs no card credentials whatever takes card payments.
    pub fn for_payouts(config: &aws_config::SdkConfig) -> Result<Self, ProvidersError> {
        Self::configured(config, false)
    }

    fn configured(config: &aws_config::SdkConfig, with_card: bool) -> Result<Self, ProvidersError> {
        let choose = |setting: &'static str, allowed: &'static [&'static str]| {
            let value = std::env::var(setting).unwrap_or_default();
            let value = if value.is_empty() {
                SANDBOX
            } else {
                value.as_str()
            };
            allowed
                .iter()
                .find(|name| **name == value)
                .copied()
                .ok_or_else(|| ProvidersError::Unknown {
                    setting,
                    value: value.to_owned(),
                    allowed: "the names in the template's parameter",
                })
        };
        let chosen = [
            choose("PAYMENT_PROVIDER_ALIPAY", &[SANDBOX, alipay::NAME])?,
            choose("PAYMENT_PROVIDER_WECHAT_PAY", &[SANDBOX, wechatpay::NAME])?,
            choose("PAYMENT_PROVIDER_CARD", &[SANDBOX, stripe::NAME])?,
        ];
        // A provider is built when a method uses it, or when its
        // credentials are named: payments it took earlier are still
        // refunded through it. Building reads nothing (credentials are
        // read on first use).
        let wanted = |name: &str, setting: &str| {
            chosen.contains(&name) || std::env::var_os(setting).is_some()
        };
        let alipay = wanted(alipay::NAME, "ALIPAY_CREDENTIALS_PARAM")
            .then(|| AlipayProvider::from_env(config))
            .transpose()?;
        let wechatpay = wanted(wechatpay::NAME, "WECHATPAY_CREDENTIALS_PARAM")
            .then(|| WechatPayProvider::from_env(config))
            .transpose()?;
        let stripe = (with_card && wanted(stripe::NAME, "STRIPE_CREDENTIALS_PARAM"))
            .then(|| StripeProvider::from_env(config))
            .transpose()?;
        Ok(Self::new(
            SandboxProvider::from_env(config),
            alipay,
            wechatpay,
            stripe,
            chosen,
        ))
    }

    fn stripe(&self) -> Result<&StripeProvider, ProviderError> {
        self.stripe
            .as_ref()
            .ok_or_else(|| not_configured(stripe::NAME))
    }

    fn wechatpay(&self) -> Result<&WechatPayProvider, ProviderError> {
        self.wechatpay
            .as_ref()
            .ok_or_else(|| not_configured(wechatpay::NAME))
    }

    fn alipay(&self) -> Result<&AlipayProvider, ProviderError> {
        self.alipay
            .as_ref()
            .ok_or_else(|| not_configured(alipay::NAME))
    }
}

fn not_configured(name: &str) -> ProviderError {
    ProviderError::NotConfigured(format!(
        "the {name} provider is not configured in this deployment"
    ))
}

impl PaymentProvider for Providers {
    fn name_for(&self, method: PaymentMethod) -> &'static str {
        self.chosen[slot(method)]
    }

    async fn checkout(
        &self,
        payment: &Payment,
        callback_base: &str,
    ) -> Result<Checkout, ProviderError> {
        match payment.provider.as_str() {
            SANDBOX => self.sandbox.checkout(payment, callback_base).await,
            alipay::NAME => self.alipay()?.checkout(payment, callback_base).await,
            wechatpay::NAME => self.wechatpay()?.checkout(payment, callback_base).await,
            stripe::NAME => self.stripe()?.checkout(payment, callback_base).await,
            other => Err(not_configured(other)),
        }
    }

    async fn refund(
        &self,
        payment: &Payment,
        refund: &RefundOrder,
    ) -> Result<RefundReceipt, ProviderError> {
        match payment.provider.as_str() {
            SANDBOX => self.sandbox.refund(payment, refund).await,
            alipay::NAME => self.alipay()?.refund(payment, refund).await,
            wechatpay::NAME => self.wechatpay()?.refund(payment, refund).await,
            stripe::NAME => self.stripe()?.refund(payment, refund).await,
            other => Err(not_configured(other)),
        }
    }

    async fn query(&self, payment: &Payment) -> Result<TradeState, ProviderError> {
        match payment.provider.as_str() {
            SANDBOX => self.sandbox.query(payment).await,
            alipay::NAME => self.alipay()?.query(payment).await,
            wechatpay::NAME => self.wechatpay()?.query(payment).await,
            stripe::NAME => self.stripe()?.query(payment).await,
            other => Err(not_configured(other)),
        }
    }

    async fn close(&self, payment: &Payment) -> Result<(), ProviderError> {
        match payment.provider.as_str() {
            SANDBOX => self.sandbox.close(payment).await,
            alipay::NAME => self.alipay()?.close(payment).await,
            wechatpay::NAME => self.wechatpay()?.close(payment).await,
            stripe::NAME => self.stripe()?.close(payment).await,
            other => Err(not_configured(other)),
        }
    }
}

/// A payout goes to the provider that takes payments by the channel's
/// method in this deployment (Alipay's or WeChat Pay's, or the sandbox).
impl PayoutProvider for Providers {
    async fn transfer(&self, payout: &PayoutOrder) -> Result<PayoutState, ProviderError> {
        match self.payout_provider(payout.channel) {
            SANDBOX => self.sandbox.transfer(payout).await,
            alipay::NAME => self.alipay()?.transfer(payout).await,
            wechatpay::NAME => self.wechatpay()?.transfer(payout).await,
            other => Err(not_configured(other)),
        }
    }

    async fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<Option<PayoutState>, ProviderError> {
        match self.payout_provider(payout.channel) {
            SANDBOX => self.sandbox.query_transfer(payout).await,
            alipay::NAME => self.alipay()?.query_transfer(payout).await,
            wechatpay::NAME => self.wechatpay()?.query_transfer(payout).await,
            other => Err(not_configured(other)),
        }
    }
}

impl Providers {
    fn payout_provider(&self, channel: Channel) -> &'static str {
        self.name_for(match channel {
            Channel::Alipay => PaymentMethod::Alipay,
            Channel::WechatPay => PaymentMethod::WechatPay,
        })
    }
}
