//! Withdrawals of the available rebate balance: a shopper asks for some of
//! it (`POST /me/rebates/withdrawals`), large ones wait for an admin, and
//! a payout through the channel's provider (Alipay's transfer, WeChat Pay's
//! merchant transfer) pays it, with the withdrawal id as the provider's
//! idempotency key.
//!
//! The amount leaves `available` when the withdrawal is created (by a
//! `WITHDRAWAL` ledger entry of minus the amount); a rejection or a
//! definite payout failure reverses that entry and the amount is available
//! again.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::money::MAX_AMOUNT;

/// `WithdrawalMinimum`'s default: 1 yuan.
pub const DEFAULT_MINIMUM: i64 = 100;
/// `WithdrawalDailyCap`'s default: 2,000 yuan a user a day.
pub const DEFAULT_DAILY_CAP: i64 = 200_000;
/// `WithdrawalReviewThreshold`'s default: above 500 yuan an admin decides.
pub const DEFAULT_REVIEW_THRESHOLD: i64 = 50_000;
/// Payouts are in yuan: both channels pay CNY into the payee's balance.
pub const CURRENCY: &str = "CNY";
pub const MAX_ACCOUNT_CHARS: usize = 64;

/// Where the money goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    /// An Alipay account: its logon id (email or mobile number) or its
    /// 2088… user id.
    Alipay,
    /// A WeChat user's balance: their `openid` under the merchant's app.
    WechatPay,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Alipay => "ALIPAY",
            Channel::WechatPay => "WECHAT_PAY",
        }
    }
}

/// Where a withdrawal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WithdrawalStatus {
    /// Above the review threshold: waiting for an admin.
    PendingReview,
    /// The payout is due or under way.
    Processing,
    /// The provider paid it.
    Paid,
    /// The provider refused it for good; the amount is available again.
    Failed,
    /// An admin refused it; the amount is available again.
    Rejected,
}

/// Something that happens to a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithdrawalTransition {
    Approve,
    Reject,
    PayoutSucceeded,
    PayoutFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a withdrawal in {} cannot take {transition:?}", .from.as_str())]
pub struct ForbiddenWithdrawalTransition {
    pub from: WithdrawalStatus,
    pub transition: WithdrawalTransition,
}

impl WithdrawalStatus {
    pub const ALL: [WithdrawalStatus; 5] = [
        WithdrawalStatus::PendingReview,
        WithdrawalStatus::Processing,
        WithdrawalStatus::Paid,
        WithdrawalStatus::Failed,
        WithdrawalStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::PendingReview => "PENDING_REVIEW",
            WithdrawalStatus::Processing => "PROCESSING",
            WithdrawalStatus::Paid => "PAID",
            WithdrawalStatus::Failed => "FAILED",
            WithdrawalStatus::Rejected => "REJECTED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the withdrawal still holds the user's one slot in flight.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            WithdrawalStatus::PendingReview | WithdrawalStatus::Processing
        )
    }

    /// Whether the amount went back to the available balance.
    pub fn returned(self) -> bool {
        matches!(self, WithdrawalStatus::Failed | WithdrawalStatus::Rejected)
    }

    pub fn apply(
        self,
        transition: WithdrawalTransition,
    ) -> Result<WithdrawalStatus, ForbiddenWithdrawalTransition> {
        use WithdrawalStatus::*;
        use WithdrawalTransition as T;
        match (self, transition) {
            (PendingReview, T::Approve) => Ok(Processing),
            (PendingReview, T::Reject) => Ok(Rejected),
            (Processing, T::PayoutSucceeded) => Ok(Paid),
            (Processing, T::PayoutFailed) => Ok(Failed),
            (from, transition) => Err(ForbiddenWithdrawalTransition { from, transition }),
        }
    }
}

/// A withdrawal as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Withdrawal {
    pub withdrawal_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub channel: Channel,
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub withdrawal_status: WithdrawalStatus,
    pub created_at: String,
    pub updated_at: String,
    /// The UTC day (`YYYY-MM-DD`) whose cap it counts in.
    pub day: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The deciding admin's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// An admin's reason for rejecting, or the provider's for failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// How many times the payout was started: from the second on, the
    /// provider is asked first what became of the earlier ones.
    #[serde(default)]
    pub payout_attempts: u32,
    /// The provider's id of the transfer once it paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<String>,
}

/// The body of `POST /me/rebates/withdrawals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WithdrawalBody {
    pub amount: i64,
    pub channel: Channel,
    pub account: String,
    /// The payee's real name: Alipay checks it against a logon id (and
    /// needs it there); optional otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
}

/// The deployment's rules (template parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalPolicy {
    pub minimum: i64,
    pub daily_cap: i64,
    pub review_threshold: i64,
}

impl Default for WithdrawalPolicy {
    fn default() -> Self {
        Self {
            minimum: DEFAULT_MINIMUM,
            daily_cap: DEFAULT_DAILY_CAP,
            review_threshold: DEFAULT_REVIEW_THRESHOLD,
        }
    }
}

impl WithdrawalPolicy {
    /// The status a new withdrawal of `amount` starts in.
    pub fn first_status(&self, amount: i64) -> WithdrawalStatus {
        if amount > self.review_threshold {
            WithdrawalStatus::PendingReview
        } else {
            WithdrawalStatus::Processing
        }
    }
}

impl WithdrawalBody {
    /// Checks what needs no balance: an amount of whole fen from the
    /// minimum up to the daily cap, and an account the channel can pay.
    /// The balance, the one in flight and what was withdrawn today are the
    /// store's to check, in the transaction (they race).
    pub fn validate(&self, policy: &WithdrawalPolicy) -> Result<(), FieldError> {
        if self.amount <= 0 {
            return Err(FieldError::new(
                "amount",
                "must be a positive whole number of fen",
            ));
        }
        if self.amount < policy.minimum {
            return Err(FieldError::new(
                "amount",
                format!(
                    "must be at least {} fen (the minimum withdrawal)",
                    policy.minimum
                ),
            ));
        }
        if self.amount > policy.daily_cap.min(MAX_AMOUNT) {
            return Err(FieldError::new(
                "amount",
                format!(
                    "must be at most {} fen (the daily withdrawal cap)",
                    policy.daily_cap
                ),
            ));
        }
        validate_account(self.channel, &self.account)?;
        self.validate_account_name()
    }

    fn validate_account_name(&self) -> Result<(), FieldError> {
        let name = self.account_name.as_deref().map(str::trim).unwrap_or("");
        if name.chars().count() > MAX_ACCOUNT_CHARS || name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "accountName",
                format!("must be at most {MAX_ACCOUNT_CHARS} printable characters"),
            ));
        }
        let logon_id = self.channel == Channel::Alipay && !is_alipay_user_id(&self.account);
        if logon_id && name.is_empty() {
            return Err(FieldError::new(
                "accountName",
                "Alipay needs the payee's real name to pay a logon id (email or mobile number)",
            ));
        }
        Ok(())
    }
}

fn is_alipay_user_id(account: &str) -> bool {
    account.len() == 16
        && account.starts_with("2088")
        && account.bytes().all(|b| b.is_ascii_digit())
}

/// An Alipay account is an email, a mobile number or a 2088… user id; a
/// WeChat `openid` is 1 to 64 letters, digits, `-` or `_`.
fn validate_account(channel: Channel, account: &str) -> Result<(), FieldError> {
    let bad = |what: &str| Err(FieldError::new("account", what.to_owned()));
    if account.is_empty() || account.chars().count() > MAX_ACCOUNT_CHARS {
        return bad(&format!("must be 1 to {MAX_ACCOUNT_CHARS} characters"));
    }
    match channel {
        Channel::Alipay => {
            let user_id = is_alipay_user_id(account);
            let mobile = (11..=15).contains(&account.len())
                && account
                    .trim_start_matches('+')
                    .bytes()
                    .all(|b| b.is_ascii_digit());
            let email = account.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !account.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            if user_id || mobile || email {
                Ok(())
            } else {
                bad("must be an Alipay logon id (an email or mobile number) or a 2088… user id")
            }
        }
        Channel::WechatPay => {
            if account
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Ok(())
            } else {
                bad("must be the payee's WeChat openid (letters, digits, - and _)")
            }
        }
    }
}

/// What a payout provider says of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutState {
    /// Paid; the provider's id of the transfer.
    Paid { reference: String },
    /// Refused for good (no such payee, the name does not match, …): the
    /// amount goes back.
    Failed { reason: String },
    /// Accepted and not finished: ask again later.
    InProgress,
}

/// A payout asked of a provider: the withdrawal's id is its idempotency
/// key (Alipay's `out_biz_no`, WeChat Pay's `out_bill_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutOrder {
    pub withdrawal_id: String,
    pub amount: i64,
    pub channel: Channel,
    pub account: String,
    pub account_name: Option<String>,
}

impl PayoutOrder {
    /// Alipay's payee identity type for the account.
    pub fn alipay_identity_type(&self) -> &'static str {
        if is_alipay_user_id(&self.account) {
            "ALIPAY_USER_ID"
        } else {
            "ALIPAY_LOGON_ID"
        }
    }
}

impl From<&Withdrawal> for PayoutOrder {
    fn from(w: &Withdrawal) -> Self {
        Self {
            withdrawal_id: w.withdrawal_id.clone(),
            amount: w.amount,
            channel: w.channel,
            account: w.account.clone(),
            account_name: w.account_name.clone(),
        }
    }
}

/// The port the payout consumer pays through. `ProviderError::Unavailable`
/// is an unknown outcome (a timeout, a 5xx): the transfer may or may not
/// have happened, so the next attempt asks before sending again.
pub trait PayoutProvider: Send + Sync {
    /// Sends the transfer; the same `withdrawal_id` again pays once.
    fn transfer(
        &self,
        payout: &PayoutOrder,
    ) -> impl Future<Output = Result<PayoutState, crate::payments::ProviderError>> + Send;

    /// What became of a transfer; `None` when the provider has none under
    /// this id (it never arrived: sending it again is safe).
    fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> impl Future<Output = Result<Option<PayoutState>, crate::payments::ProviderError>> + Send;
}

/// A provider lent to a consumer pays as itself.
impl<P: PayoutProvider> PayoutProvider for &P {
    async fn transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<PayoutState, crate::payments::ProviderError> {
        (**self).transfer(payout).await
    }

    async fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<Option<PayoutState>, crate::payments::ProviderError> {
        (**self).query_transfer(payout).await
    }
}

/// Why a withdrawal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("withdrawal {0:?} does not exist")]
    NotFound(String),
    #[error("amount: {amount} fen is more than the available balance of {available} fen")]
    InsufficientBalance { amount: i64, available: i64 },
    #[error("withdrawal {0} is still in flight: one at a time")]
    InFlight(String),
    #[error(
        "amount: {amount} fen would take today's withdrawals past the daily cap of {cap} fen ({withdrawn} fen so far)"
    )]
    DailyCap {
        amount: i64,
        withdrawn: i64,
        cap: i64,
    },
    #[error("withdrawal {id} is {}: {transition:?} is not possible", .status.as_str())]
    Forbidden {
        id: String,
        status: WithdrawalStatus,
        transition: WithdrawalTransition,
    },
    #[error(transparent)]
    KeyReused(#[from] crate::error::KeyReused),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

/// The UTC day of `at`, `YYYY-MM-DD`: the daily cap's calendar.
pub fn day_of(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

#[cfg(test)]
mod tests {
    use super::WithdrawalStatus::*;
    use super::WithdrawalTransition as T;
    use super::*;

    const TRANSITIONS: [WithdrawalTransition; 4] =
        [T::Approve, T::Reject, T::PayoutSucceeded, T::PayoutFailed];

    #[test]
    fn every_status_under_every_transition() {
        for from in WithdrawalStatus::ALL {
            for transition in TRANSITIONS {
                let expected = match (from, transition) {
                    (PendingReview, T::Approve) => Some(Processing),
                    (PendingReview, T::Reject) => Some(Rejected),
                    (Processing, T::PayoutSucceeded) => Some(Paid),
                    (Processing, T::PayoutFailed) => Some(Failed),
                    _ => None,
                };
                assert_eq!(
                    from.apply(transition).ok(),
                    expected,
                    "{from:?} × {transition:?}"
                );
            }
        }
    }

    #[test]
    fn the_finished_statuses_take_nothing() {
        for from in [Paid, Failed, Rejected] {
            assert!(!from.in_flight());
            for transition in TRANSITIONS {
                assert!(from.apply(transition).is_err());
            }
        }
        assert!(PendingReview.in_flight() && Processing.in_flight());
        assert!(Failed.returned() && Rejected.returned() && !Paid.returned());
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in WithdrawalStatus::ALL {
            assert_eq!(WithdrawalStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
        }
        assert_eq!(WithdrawalStatus::parse("paid"), None);
    }

    fn body(amount: i64, channel: Channel, account: &str) -> WithdrawalBody {
        WithdrawalBody {
            amount,
            channel,
            account: account.into(),
            account_name: Some("张三".into()),
        }
    }

    #[test]
    fn amounts_from_the_minimum_to_the_daily_cap() {
        let policy = WithdrawalPolicy::default();
        let check = |amount| {
            body(amount, Channel::Alipay, "buyer@example.com")
                .validate(&policy)
                .map_err(|e| e.to_string())
        };
        for bad in [0, -1, i64::MIN, 99, DEFAULT_DAILY_CAP + 1, i64::MAX] {
            let err = check(bad).unwrap_err();
            assert!(err.starts_with("amount: "), "{bad}: {err}");
        }
        for good in [100, 101, DEFAULT_DAILY_CAP] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn accounts_each_channel_can_pay() {
        let policy = WithdrawalPolicy::default();
        let ok = |channel, account: &str| body(100, channel, account).validate(&policy).is_ok();
        assert!(ok(Channel::Alipay, "buyer@example.com"));
        assert!(ok(Channel::Alipay, "13800138000"));
        assert!(ok(Channel::Alipay, "2088123412341234"));
        assert!(!ok(Channel::Alipay, ""));
        assert!(!ok(Channel::Alipay, "not an account"));
        assert!(!ok(Channel::Alipay, "a b@example.com"));
        assert!(!ok(
            Channel::Alipay,
            &format!("{}@example.com", "a".repeat(60))
        ));
        assert!(ok(Channel::WechatPay, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
        assert!(!ok(Channel::WechatPay, "o Up"));
        assert!(!ok(Channel::WechatPay, "buyer@example.com"));
        // Alipay pays a logon id only with the payee's name.
        let nameless = |account: &str| WithdrawalBody {
            account_name: None,
            ..body(100, Channel::Alipay, account)
        };
        let err = nameless("buyer@example.com").validate(&policy).unwrap_err();
        assert_eq!(err.field, "accountName");
        assert!(nameless("2088123412341234").validate(&policy).is_ok());
    }

    #[test]
    fn large_withdrawals_wait_for_review() {
        let policy = WithdrawalPolicy::default();
        assert_eq!(policy.first_status(DEFAULT_REVIEW_THRESHOLD), Processing);
        assert_eq!(
            policy.first_status(DEFAULT_REVIEW_THRESHOLD + 1),
            PendingReview
        );
    }

    #[test]
    fn days_are_utc_calendar_days() {
        use time::macros::datetime;
        assert_eq!(day_of(datetime!(2026-12-31 23:59:59 UTC)), "2026-12-31");
        assert_eq!(day_of(datetime!(2027-01-01 00:00:00 UTC)), "2027-01-01");
        assert_eq!(day_of(datetime!(2027-01-01 07:59:59 +08:00)), "2026-12-31");
        assert_eq!(day_of(datetime!(2028-02-29 12:00:00 UTC)), "2028-02-29");
    }
}
