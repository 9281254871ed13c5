//! What a deployed function connects to, built once per container from the
//! environment the template sets.

use aws_config::SdkConfig;

use crate::catalog::Catalog;
use crate::config::{InvalidSetting, Tables};
use crate::notifications::{DailyCap, Notifications};
use crate::orders::Orders;
use crate::payments::Payments;
use crate::ratelimit::RateLimit;
use crate::rebates::Rebates;
use crate::refund_requests::RefundRequests;
use crate::sales::Sales;
use crate::withdrawals::Withdrawals;
use domain::notifications::verification::Contact;

#[derive(Clone, Debug)]
pub struct Backend {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub tables: Tables,
}

impl Backend {
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let tables = Tables::from_env();
        let sdk = crate::db::sdk_config().await;
        let dynamodb = crate::db::dynamodb(&sdk);
        let backend = Self {
            sdk,
            dynamodb,
            tables,
        };
        if std::env::var("STORE_CONNECT_AT_INIT").as_deref() == Ok("true") {
            backend.connect_store().await;
        }
        Ok(backend)
    }

    /// Opens the store's connection (DNS, TCP, TLS) now rather than on the
    /// first event, with the cheapest call DynamoDB has (`DescribeEndpoints`;
    /// its answer, or its refusal, is not needed: the connection stays in
    /// the pool). A knob for `scripts/bench lambda` to weigh init against
    /// first-request work; the README's cold-start decisions say where it
    /// is on (nowhere: measured, it only adds a round trip under a quota).
    pub async fn connect_store(&self) {
        if let Err(err) = self.dynamodb.describe_endpoints().send().await {
            tracing::debug!(error = %err, "the store's connection is open; its answer is not needed");
        }
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.dynamodb.clone(), &self.tables)
    }

    /// Orders, with the per-user limit the template sets
    /// (`ORDER_RATE_PER_MINUTE`, `ORDER_RATE_BURST`) and the late-payment
    /// grace (`LATE_PAYMENT_GRACE_SECONDS`).
    pub fn orders(&self) -> Result<Orders, InvalidSetting> {
        Ok(Orders::new(self.dynamodb.clone(), self.tables.clone())
            .with_rate_limit(RateLimit::from_env(
                &self.tables.rate_limits,
                "createOrder",
                "ORDER_RATE",
            ))
            .with_late_payment_grace(crate::config::late_payment_grace()?)
            .with_auto_confirm_after(crate::config::auto_confirm_after()?))
    }

    /// Payments, with the per-user limit the template sets
    /// (`PAYMENT_RATE_PER_MINUTE`, `PAYMENT_RATE_BURST`).
    pub fn payments(&self) -> Payments {
        let reconcile_after = crate::config::reconcile_after().unwrap_or_else(|err| {
            tracing::error!(%err, "using the default reconciliation delay");
            time::Duration::minutes(2)
        });
        Payments::new(self.dynamodb.clone(), self.tables.clone())
            .with_rate_limit(RateLimit::from_env(
                &self.tables.rate_limits,
                "initiatePayment",
                "PAYMENT_RATE",
            ))
            .with_reconcile_after(reconcile_after)
    }

    /// The rebate ledger.
    pub fn rebates(&self) -> Rebates {
        Rebates::new(self.dynamodb.clone(), self.tables.clone())
    }

    /// Refund requests, with the after-sales window the template sets.
    pub fn refund_requests(&self) -> Result<RefundRequests, InvalidSetting> {
        Ok(
            RefundRequests::new(self.dynamodb.clone(), self.tables.clone())
                .with_after_sales(crate::config::after_sales()?),
        )
    }

    /// Withdrawals, under the rules the template sets
    /// (`WITHDRAWAL_MINIMUM`, `WITHDRAWAL_DAILY_CAP`,
    /// `WITHDRAWAL_REVIEW_THRESHOLD`).
    pub fn withdrawals(&self) -> Result<Withdrawals, InvalidSetting> {
        Ok(Withdrawals::new(self.dynamodb.clone(), self.tables.clone())
            .with_policy(crate::config::withdrawal_policy()?))
    }

    pub fn sales(&self) -> Sales {
        Sales::new(self.dynamodb.clone(), self.tables.clone())
    }

    pub fn notifications(&self) -> Notifications {
        Notifications::new(self.dynamodb.clone(), self.tables.clone())
    }

    /// The user's daily cap on `contact`'s messages, as the template sets it
    /// (`SMS_DAILY_CAP`, `EMAIL_DAILY_CAP`).
    pub fn daily_cap(&self, contact: Contact) -> Result<DailyCap, InvalidSetting> {
        Ok(DailyCap {
            client: self.dynamodb.clone(),
            table: self.tables.rate_limits.clone(),
            contact,
            per_day: crate::config::daily_cap(contact)?,
        })
    }
}
