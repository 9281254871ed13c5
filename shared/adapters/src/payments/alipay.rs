//! Alipay's OpenAPI protocol (public-key mode, RSA2), as its gateway and its
//! official SDKs speak it.
//!
//! - A request is a form POST of `app_id, method, format=JSON,
//!   charset=utf-8, sign_type=RSA2, timestamp` (Beijing time), `version=1.0`,
//!   `notify_url` and `biz_content` (JSON), signed with the app's private key
//!   over every parameter but `sign`: empty values dropped, keys sorted,
//!   `k=v` joined by `&` with raw (not URL-encoded) values.
//! - A synchronous answer is `{"<method with _>_response":{..},"sign":".."}`,
//!   signed by Alipay over the exact text of the response object: verified
//!   on the bytes received, never on a re-serialisation.
//! - A notification (`notify_url`, form body) is signed by Alipay over all
//!   its fields but `sign` and `sign_type`, built the same way.
//!
//! Amounts are yuan strings with two decimals built from integer fen
//! ([`domain::money::to_decimal`]).

use std::collections::BTreeMap;

use domain::money::{BadDecimal, parse_decimal};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::macros::{format_description, offset};

use std::sync::Arc;

use bytes::Bytes;
use domain::clock;
use domain::money::to_decimal;
use domain::payments::{
    Checkout, NotifiedResult, Payment, PaymentMethod, PaymentProvider, ProviderError,
    ProviderNotification, RefundOrder, RefundReceipt, RefundStatus, TradeState, VerifiedCallback,
    VerifyError,
};
use domain::withdrawals::{PayoutOrder, PayoutProvider, PayoutState};
use http_body_util::Full;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::http::{CallError, ProviderHttp, with_one_retry};
use super::keys::{SigningKey, VerifyingKey};
use crate::secrets::Credentials;

/// Alipay's production gateway; a parameter points it elsewhere (the
/// sandbox `https://openapi-sandbox.dl.alipaydev.com/gateway.do`, the local
/// simulator).
pub const GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// The literal answer that stops Alipay resending a notification; anything
/// else makes it try again (about 8 times over 25 hours).
pub const ACKNOWLEDGEMENT: &str = "success";

/// The result code of a call that did what it was asked.
pub const SUCCESS_CODE: &str = "10000";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlipayError {
    #[error("the notification is not a form body: {0}")]
    Malformed(String),
    #[error("the field {0} is missing")]
    Missing(&'static str),
    #[error("the field {0} appears more than once")]
    Repeated(String),
    #[error("sign_type {0:?} is not RSA2")]
    SignType(String),
    #[error("the signature does not verify with Alipay's public key")]
    BadSignature,
    #[error("the answer is not Alipay's JSON: {0}")]
    NotJson(String),
    #[error("the answer has no {0}")]
    NoResponse(String),
    #[error(transparent)]
    Amount(#[from] BadDecimal),
}

/// The string Alipay signs: `params` without `excluded` keys and empty
/// values, sorted by key, `k=v` joined by `&`, values raw.
pub fn signing_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    excluded: &[&str],
) -> String {
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !v.is_empty() && !excluded.contains(k))
        .collect();
    kept.sort_unstable();
    let mut content = String::new();
    for (i, (k, v)) in kept.into_iter().enumerate() {
        if i > 0 {
            content.push('&');
        }
        content.push_str(k);
        content.push('=');
        content.push_str(v);
    }
    content
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time, the gateway's `timestamp`.
pub fn beijing_time(now: OffsetDateTime) -> String {
    now.to_offset(offset!(+8))
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .expect("a date in range formats")
}

/// A signed call: its public parameters plus `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    pub params: Vec<(String, String)>,
}

impl SignedRequest {
    pub fn new(
        app_id: &str,
        method: &str,
        biz_content: &serde_json::Value,
        notify_url: Option<&str>,
        now: OffsetDateTime,
        key: &SigningKey,
    ) -> Self {
        let mut params: Vec<(String, String)> = [
            ("app_id", app_id),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", &beijing_time(now)),
            ("version", "1.0"),
            ("notify_url", notify_url.unwrap_or("")),
            ("biz_content", &biz_content.to_string()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let content = signing_content(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign"],
        );
        params.push(("sign".into(), key.sign(content.as_bytes())));
        Self {
            method: method.to_owned(),
            params,
        }
    }

    /// The form body of the POST to the gateway.
    pub fn form_body(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.params)
            .finish()
    }

    /// The same signed call as a URL: what `alipay.trade.page.pay` and
    /// `alipay.trade.wap.pay` are (the buyer's browser opens it; no server
    /// call).
    pub fn url(&self, gateway: &str) -> String {
        format!("{gateway}?{}", self.form_body())
    }
}

/// Verifies a synchronous answer to `method` and returns its response
/// object (`code`, `msg`, `sub_code`, and the method's fields).
pub fn verify_response(
    raw: &str,
    method: &str,
    alipay_key: &VerifyingKey,
) -> Result<serde_json::Map<String, serde_json::Value>, AlipayError> {
    let envelope: BTreeMap<String, &RawValue> =
        serde_json::from_str(raw).map_err(|e| AlipayError::NotJson(e.to_string()))?;
    let name = format!("{}_response", method.replace('.', "_"));
    // A gateway-level error (an unknown method, a bad app id) comes back as
    // `error_response`, signed the same way.
    let response = envelope
        .get(&name)
        .or_else(|| envelope.get("error_response"))
        .ok_or(AlipayError::NoResponse(name))?;
    let sign: String = envelope
        .get("sign")
        .ok_or(AlipayError::Missing("sign"))
        .and_then(|s| {
            serde_json::from_str(s.get()).map_err(|e| AlipayError::NotJson(e.to_string()))
        })?;
    alipay_key
        .verify(response.get().as_bytes(), &sign)
        .map_err(|_| AlipayError::BadSignature)?;
    serde_json::from_str(response.get()).map_err(|e| AlipayError::NotJson(e.to_string()))
}

/// A notification's fields once its signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification(BTreeMap<String, String>);

impl Notification {
    /// Parses a form body and checks it was signed by `alipay_key`. Nothing
    /// in it is believed before this returns.
    pub fn verify(form: &[u8], alipay_key: &VerifyingKey) -> Result<Self, AlipayError> {
        let text = std::str::from_utf8(form).map_err(|e| AlipayError::Malformed(e.to_string()))?;
        if !text.contains('=') {
            return Err(AlipayError::Malformed("no key=value pairs".into()));
        }
        let mut fields = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(text.as_bytes()) {
            // A second value for a key would let a forger show one value to
            // the signature check and another to the reader.
            if fields.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(AlipayError::Repeated(key.into_owned()));
            }
        }
        let sign = fields
            .get("sign")
            .filter(|s| !s.is_empty())
            .ok_or(AlipayError::Missing("sign"))?;
        if let Some(kind) = fields.get("sign_type").filter(|t| t.as_str() != "RSA2") {
            return Err(AlipayError::SignType(kind.clone()));
        }
        let content = signing_content(
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign", "sign_type"],
        );
        alipay_key
            .verify(content.as_bytes(), sign)
            .map_err(|_| AlipayError::BadSignature)?;
        Ok(Self(fields))
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .get(field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, field: &'static str) -> Result<&str, AlipayError> {
        self.get(field).ok_or(AlipayError::Missing(field))
    }

    /// `total_amount` in fen.
    pub fn total_amount(&self) -> Result<i64, AlipayError> {
        Ok(parse_decimal(self.required("total_amount")?)?)
    }

    /// Whether the trade is paid: only `TRADE_SUCCESS` and `TRADE_FINISHED`
    /// (`WAIT_BUYER_PAY` and `TRADE_CLOSED` are not).
    pub fn is_paid(&self) -> bool {
        matches!(
            self.get("trade_status"),
            Some("TRADE_SUCCESS" | "TRADE_FINISHED")
        )
    }
}

/// The Alipay app's credentials, one SSM SecureString parameter of JSON:
/// `{"appId", "sellerId", "appPrivateKey", "alipayPublicKey"}` (the keys as
/// Alipay's key tool prints them or as PEM; `sellerId` is the merchant's
/// 2088… partner id, checked on every notification when set).
#[derive(Debug)]
pub struct Account {
    pub app_id: String,
    pub seller_id: Option<String>,
    app_key: SigningKey,
    alipay_key: VerifyingKey,
}

impl Account {
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Stored {
            app_id: String,
            #[serde(default)]
            seller_id: Option<String>,
            app_private_key: String,
            alipay_public_key: String,
        }
        let stored: Stored =
            serde_json::from_slice(json).map_err(|e| format!("Alipay credentials: {e}"))?;
        Ok(Self {
            app_key: SigningKey::from_text(&stored.app_private_key)
                .map_err(|e| format!("appPrivateKey: {e}"))?,
            alipay_key: VerifyingKey::from_text(&stored.alipay_public_key)
                .map_err(|e| format!("alipayPublicKey: {e}"))?,
            app_id: stored.app_id,
            seller_id: stored.seller_id.filter(|s| !s.is_empty()),
        })
    }
}

/// `ALIPAY` payments at Alipay: a QR code from `alipay.trade.precreate`
/// and a page-pay URL for the same trade, refunds, queries and closing.
pub struct AlipayProvider {
    account: Credentials<Account>,
    gateway: String,
    http: ProviderHttp,
}

impl std::fmt::Debug for AlipayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayProvider")
            .field("account", &self.account)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl AlipayProvider {
    pub fn new(
        account: Credentials<Account>,
        gateway: impl Into<String>,
        http: ProviderHttp,
    ) -> Self {
        Self {
            account,
            gateway: gateway.into(),
            http,
        }
    }

    /// The provider as a deployed function uses it: credentials in the SSM
    /// parameter `ALIPAY_CREDENTIALS_PARAM`, the gateway `ALIPAY_GATEWAY`
    /// (Alipay's production gateway by default).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, crate::config::MissingSetting> {
        let name = crate::config::required("ALIPAY_CREDENTIALS_PARAM")?;
        let gateway = std::env::var("ALIPAY_GATEWAY").unwrap_or_else(|_| GATEWAY.into());
        Ok(Self::new(
            Credentials::in_ssm(config, name, Account::parse),
            gateway,
            ProviderHttp::default(),
        ))
    }

    async fn account(&self) -> Result<Arc<Account>, ProviderError> {
        self.account.get().await.map_err(|e| e.for_provider(NAME))
    }

    /// Verifies and judges a notification: Alipay's signature (re-reading
    /// the key once if a rotated one may be waiting), then that it is for
    /// this app and seller, then its amount as fen.
    pub async fn verify_callback(&self, form: &[u8]) -> Result<VerifiedCallback, VerifyError> {
        let account = self.account().await?;
        let fields = match Notification::verify(form, &account.alipay_key) {
            Err(AlipayError::BadSignature) => match self
                .account
                .refresh()
                .await
                .map_err(|e| e.for_provider(NAME))?
            {
                Some(newer) => Notification::verify(form, &newer.alipay_key),
                None => Err(AlipayError::BadSignature),
            },
            other => other,
        }
        .map_err(|e| VerifyError::BadSignature(e.to_string()))?;
        let notify_id = fields.get("notify_id").unwrap_or("").to_owned();
        let foreign = |what: &str| {
            VerifyError::Foreign(format!("notification {notify_id} is for another {what}"))
        };
        if fields.get("app_id") != Some(account.app_id.as_str()) {
            return Err(foreign("app_id"));
        }
        if let Some(seller) = &account.seller_id
            && fields.get("seller_id") != Some(seller.as_str())
        {
            return Err(foreign("seller_id"));
        }
        if !fields.is_paid() {
            let why = format!(
                "trade_status {}",
                fields.get("trade_status").unwrap_or("(none)")
            );
            return Ok(VerifiedCallback::Ignored {
                notification_id: notify_id,
                why,
            });
        }
        let bad = |e: AlipayError| VerifyError::Foreign(format!("notification {notify_id}: {e}"));
        let notification = ProviderNotification {
            payment_id: fields.required("out_trade_no").map_err(bad)?.to_owned(),
            // Alipay does not echo our order id; the caller fills it in
            // from the payment that out_trade_no names.
            order_id: String::new(),
            payment_status: NotifiedResult::Success,
            amount: fields.total_amount().map_err(bad)?,
            currency: "CNY".into(),
            provider_transaction_id: fields.required("trade_no").map_err(bad)?.to_owned(),
            failure_reason: None,
        };
        Ok(VerifiedCallback::Payment {
            notification_id: notify_id,
            notification,
        })
    }

    /// One gateway call: signed, sent, and its answer verified with Alipay's
    /// key before anything in it is read. Every method used here is keyed
    /// by `out_trade_no` or `out_request_no`, so one retry of an unknown
    /// outcome cannot do a thing twice.
    async fn call(
        &self,
        method: &str,
        biz_content: serde_json::Value,
        notify_url: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
        with_one_retry(method, true, || {
            self.call_once(method, &biz_content, notify_url)
        })
        .await
    }

    async fn call_once(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
        notify_url: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
        let account = self.account().await?;
        let request = SignedRequest::new(
            &account.app_id,
            method,
            biz_content,
            notify_url,
            clock::now(),
            &account.app_key,
        );
        let http_request = http::Request::post(&self.gateway)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(Full::new(Bytes::from(request.form_body())))
            .map_err(|e| ProviderError::Unavailable(format!("request: {e}")))?;
        let answer = self.http.send(http_request).await?;
        if !answer.status.is_success() {
            return Err(ProviderError::Unavailable(format!(
                "Alipay answered HTTP {}",
                answer.status
            ))
            .into());
        }
        let response = verify_response(answer.text()?, method, &account.alipay_key)
            .map_err(|e| ProviderError::Unavailable(format!("Alipay's answer to {method}: {e}")))?;
        let text = |field: &str| {
            response
                .get(field)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        match text("code").as_str() {
            SUCCESS_CODE => Ok(response),
            // 20000: Alipay's service is unavailable; the outcome is unknown.
            "20000" => Err(ProviderError::Unavailable(format!(
                "Alipay {}: {}",
                text("sub_code"),
                text("sub_msg")
            ))
            .into()),
            code => Err(CallError::Business {
                provider: "Alipay",
                status: 200,
                code: if text("sub_code").is_empty() {
                    code.to_owned()
                } else {
                    text("sub_code")
                },
                message: format!("{} {}", text("msg"), text("sub_msg"))
                    .trim()
                    .to_owned(),
            }),
        }
    }

    fn trade(payment: &Payment) -> Result<serde_json::Value, ProviderError> {
        if payment.currency != "CNY" {
            return Err(ProviderError::Refused(format!(
                "Alipay takes CNY, not {}",
                payment.currency
            )));
        }
        let mut trade = json!({
            "out_trade_no": payment.payment_id,
            "total_amount": to_decimal(payment.amount),
            "subject": format!("Order {}", payment.order_id),
        });
        // The trade cannot be paid after the order's window: Alipay refuses it.
        if let Ok(expires) = OffsetDateTime::parse(&payment.expires_at, &Rfc3339) {
            trade["time_expire"] = json!(beijing_time(expires));
        }
        Ok(trade)
    }
}

impl PaymentProvider for AlipayProvider {
    fn name_for(&self, _method: PaymentMethod) -> &'static str {
        NAME
    }

    async fn checkout(
        &self,
        payment: &Payment,
        callback_base: &str,
    ) -> Result<Checkout, ProviderError> {
        let notify_url = format!(
            "{}/payments/notify/alipay",
            callback_base.trim_end_matches('/')
        );
        let trade = Self::trade(payment)?;
        let answer = self
            .call("alipay.trade.precreate", trade.clone(), Some(&notify_url))
            .await?;
        let qr_code = answer
            .get("qr_code")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                ProviderError::Unavailable("Alipay's precreate answer has no qr_code".into())
            })?
            .to_owned();
        let mut page = trade;
        page["product_code"] = json!("FAST_INSTANT_TRADE_PAY");
        let account = self.account().await?;
        let page_pay = SignedRequest::new(
            &account.app_id,
            "alipay.trade.page.pay",
            &page,
            Some(&notify_url),
            clock::now(),
            &account.app_key,
        );
        Ok(Checkout {
            payment_url: page_pay.url(&self.gateway),
            qr_code: Some(qr_code),
            provider_reference: None,
        })
    }

    async fn refund(
        &self,
        payment: &Payment,
        refund: &RefundOrder,
    ) -> Result<RefundReceipt, ProviderError> {
        let answer = self
            .call(
                "alipay.trade.refund",
                json!({
                    "out_trade_no": payment.payment_id,
                    "refund_amount": to_decimal(refund.amount),
                    "out_request_no": refund.refund_id,
                    "refund_reason": refund.reason.chars().take(256).collect::<String>(),
                }),
                None,
            )
            .await?;
        // fund_change "N" on a repeat of the same out_request_no: refunded
        // before, not again.
        let trade_no = answer
            .get("trade_no")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        // Alipay refunds synchronously: the answer is the result.
        Ok(RefundReceipt {
            provider_refund_id: format!("{trade_no}/{}", refund.refund_id),
            refund_status: RefundStatus::Succeeded,
        })
    }

    async fn query(&self, payment: &Payment) -> Result<TradeState, ProviderError> {
        let answer = match self
            .call(
                "alipay.trade.query",
                json!({"out_trade_no": payment.payment_id}),
                None,
            )
            .await
        {
            Ok(answer) => answer,
            // A page-pay trade exists only once the buyer opened the page.
            Err(err) if err.is("ACQ.TRADE_NOT_EXIST") => {
                return Ok(TradeState::Open);
            }
            Err(err) => return Err(err.into()),
        };
        let text = |field: &str| answer.get(field).and_then(|v| v.as_str()).unwrap_or("");
        Ok(match text("trade_status") {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => TradeState::Paid {
                provider_transaction_id: text("trade_no").to_owned(),
                amount: parse_decimal(text("total_amount")).map_err(|e| {
                    ProviderError::Unavailable(format!("Alipay's query answer: {e}"))
                })?,
                currency: "CNY".into(),
            },
            "TRADE_CLOSED" => TradeState::Closed,
            _ => TradeState::Open,
        })
    }

    async fn close(&self, payment: &Payment) -> Result<(), ProviderError> {
        match self
            .call(
                "alipay.trade.close",
                json!({"out_trade_no": payment.payment_id}),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            // Never opened by the buyer: its signed URL expires with the
            // order (time_expire), so there is nothing left to close.
            Err(err) if err.is("ACQ.TRADE_NOT_EXIST") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Alipay's product for a transfer into an Alipay account without the
/// payer's password (the merchant's balance pays).
const TRANSFER_PRODUCT: &str = "TRANS_ACCOUNT_NO_PWD";
const TRANSFER_SCENE: &str = "DIRECT_TRANSFER";

/// Transfer errors after which nothing moved and nothing will: the payee
/// is wrong. Anything else (our balance, Alipay's system) is retried.
const PAYEE_ERRORS: [&str; 6] = [
    "PAYEE_NOT_EXIST",
    "PAYEE_USERINFO_ERROR",
    "PAYEE_ACC_OCUPIED",
    "PAYEE_ACCOUNT_STATUS_ERROR",
    "PERMIT_NON_BANK_LIMIT_PAYEE",
    "PAYEE_USER_TYPE_ERROR",
];

impl AlipayProvider {
    /// `alipay.fund.trans.uni.transfer`'s or `.common.query`'s `status`.
    fn payout_state(answer: &serde_json::Map<String, serde_json::Value>) -> PayoutState {
        let text = |field: &str| answer.get(field).and_then(|v| v.as_str()).unwrap_or("");
        match text("status") {
            "SUCCESS" => PayoutState::Paid {
                reference: match text("pay_fund_order_id") {
                    "" => text("order_id").to_owned(),
                    id => id.to_owned(),
                },
            },
            "FAIL" | "CLOSED" | "REFUND" => PayoutState::Failed {
                reason: match (text("error_code"), text("fail_reason")) {
                    ("", "") => format!("Alipay status {}", text("status")),
                    (code, why) => format!("Alipay {code} {why}").trim().to_owned(),
                },
            },
            // DEALING, WAIT_PAY, INIT: accepted, not finished.
            _ => PayoutState::InProgress,
        }
    }
}

impl PayoutProvider for AlipayProvider {
    async fn transfer(&self, payout: &PayoutOrder) -> Result<PayoutState, ProviderError> {
        let mut payee = json!({
            "identity": payout.account,
            "identity_type": payout.alipay_identity_type(),
        });
        if let Some(name) = &payout.account_name {
            payee["name"] = json!(name);
        }
        let answer = self
            .call(
                "alipay.fund.trans.uni.transfer",
                json!({
                    "out_biz_no": payout.withdrawal_id,
                    "trans_amount": to_decimal(payout.amount),
                    "product_code": TRANSFER_PRODUCT,
                    "biz_scene": TRANSFER_SCENE,
                    "order_title": "Rebate withdrawal",
                    "payee_info": payee,
                }),
                None,
            )
            .await;
        match answer {
            Ok(answer) => Ok(Self::payout_state(&answer)),
            Err(CallError::Business { code, message, .. })
                if PAYEE_ERRORS.contains(&code.as_str()) =>
            {
                Ok(PayoutState::Failed {
                    reason: format!("Alipay {code}: {message}"),
                })
            }
            // SYSTEM_ERROR and the like: the transfer may have happened.
            Err(CallError::Business { code, message, .. }) => Err(ProviderError::Unavailable(
                format!("Alipay {code}: {message}"),
            )),
            Err(err) => Err(err.into()),
        }
    }

    async fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<Option<PayoutState>, ProviderError> {
        let answer = self
            .call(
                "alipay.fund.trans.common.query",
                json!({
                    "out_biz_no": payout.withdrawal_id,
                    "product_code": TRANSFER_PRODUCT,
                    "biz_scene": TRANSFER_SCENE,
                }),
                None,
            )
            .await;
        match answer {
            Ok(answer) => Ok(Some(Self::payout_state(&answer))),
            Err(err) if err.is("ORDER_NOT_EXIST") => Ok(None),
            Err(err) => Err(ProviderError::Unavailable(
                ProviderError::from(err).to_string(),
            )),
        }
    }
}

/// The provider's name on payments it took.
pub const NAME: &str = "alipay";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::keys::fixtures;
    use serde_json::json;

    const VECTOR: &str = include_str!("../../tests/vectors/alipay-notify.json");

    fn vector() -> (VerifyingKey, Vec<(String, String)>) {
        let vector: serde_json::Value = serde_json::from_str(VECTOR).unwrap();
        let key = VerifyingKey::from_text(vector["alipay_public_key_base64_der"].as_str().unwrap())
            .unwrap();
        let params = vector["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        (key, params)
    }

    fn form(params: &[(String, String)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    #[test]
    fn alipays_own_notification_verifies() {
        let (key, params) = vector();
        let notification = Notification::verify(&form(&params), &key).unwrap();
        assert!(notification.is_paid());
        assert_eq!(notification.total_amount(), Ok(10));
        assert_eq!(
            notification.get("out_trade_no"),
            Some("20190815155618536-564-57")
        );
        assert_eq!(notification.get("app_id"), Some("2019073166072302"));
    }

    #[test]
    fn alipays_notification_fails_once_touched() {
        let (key, params) = vector();
        let content = |excluded: &[&str]| {
            signing_content(
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                excluded,
            )
        };
        let sign = &params.iter().find(|(k, _)| k == "sign").unwrap().1;
        assert!(
            key.verify(content(&["sign", "sign_type"]).as_bytes(), sign)
                .is_ok()
        );
        // sign_type kept in the string: not what Alipay signs.
        assert!(key.verify(content(&["sign"]).as_bytes(), sign).is_err());

        let changed = |field: &str, value: &str| {
            let mut params = params.clone();
            params.iter_mut().find(|(k, _)| k == field).unwrap().1 = value.to_owned();
            Notification::verify(&form(&params), &key)
        };
        assert_eq!(
            changed("total_amount", "0.11"),
            Err(AlipayError::BadSignature)
        );
        assert_eq!(
            changed("out_trade_no", "20190815155618536-564-58"),
            Err(AlipayError::BadSignature)
        );
        assert_eq!(
            changed("sign_type", "RSA"),
            Err(AlipayError::SignType("RSA".into()))
        );
        // One changed byte of the signature.
        let mut sign = sign.clone().into_bytes();
        sign[10] = if sign[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            changed("sign", std::str::from_utf8(&sign).unwrap()),
            Err(AlipayError::BadSignature)
        );
        // Another key.
        let other = VerifyingKey::from_text(fixtures::MERCHANT_PUBLIC_PEM).unwrap();
        assert_eq!(
            Notification::verify(&form(&params), &other),
            Err(AlipayError::BadSignature)
        );
        // An added field is signed content too.
        let mut added = params.clone();
        added.push(("passback_params".into(), "x".into()));
        assert_eq!(
            Notification::verify(&form(&added), &key),
            Err(AlipayError::BadSignature)
        );
        // An empty added field is not (Alipay drops empty values).
        let mut empty = params.clone();
        empty.push(("passback_params".into(), String::new()));
        assert!(Notification::verify(&form(&empty), &key).is_ok());
    }

    #[test]
    fn malformed_notifications() {
        let (key, params) = vector();
        let mut repeated = params.clone();
        repeated.push(("total_amount".into(), "9999.00".into()));
        assert_eq!(
            Notification::verify(&form(&repeated), &key),
            Err(AlipayError::Repeated("total_amount".into()))
        );
        let unsigned: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "sign")
            .cloned()
            .collect();
        assert_eq!(
            Notification::verify(&form(&unsigned), &key),
            Err(AlipayError::Missing("sign"))
        );
        for junk in [&b""[..], b"{}", b"\xff\xfe=1"] {
            assert!(
                matches!(
                    Notification::verify(junk, &key),
                    Err(AlipayError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn requests_are_signed_over_the_sorted_non_empty_parameters() {
        let key = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let public = VerifyingKey::from_text(fixtures::MERCHANT_PUBLIC_PEM).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_795_334_400).unwrap(); // 2026-11-22T08:00:00Z
        let request = SignedRequest::new(
            "2021000000000000",
            "alipay.trade.precreate",
            &json!({"out_trade_no": "pay1", "total_amount": "168.00", "subject": "订单 o1"}),
            None,
            now,
            &key,
        );
        let content = signing_content(
            request.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign"],
        );
        assert_eq!(
            content,
            r#"app_id=2021000000000000&biz_content={"out_trade_no":"pay1","subject":"订单 o1","total_amount":"168.00"}&charset=utf-8&format=JSON&method=alipay.trade.precreate&sign_type=RSA2&timestamp=2026-11-22 16:00:00&version=1.0"#
        );
        let sign = &request.params.last().unwrap().1;
        assert!(public.verify(content.as_bytes(), sign).is_ok());
        // The URL form round-trips to the same parameters.
        let url = request.url(GATEWAY);
        let query = url.split_once('?').unwrap().1;
        let back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back, request.params);
    }

    #[test]
    fn answers_are_verified_on_their_exact_text() {
        let key = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let public = VerifyingKey::from_text(fixtures::MERCHANT_PUBLIC_PEM).unwrap();
        // Spacing and key order as sent: a re-serialisation would differ.
        let body = r#"{"code":"10000","msg":"Success","out_trade_no":"pay1","qr_code":"https://qr.alipay.com/bax0"}"#;
        let raw = format!(
            r#"{{"alipay_trade_precreate_response":{body},"sign":"{}"}}"#,
            key.sign(body.as_bytes())
        );
        let response = verify_response(&raw, "alipay.trade.precreate", &public).unwrap();
        assert_eq!(response["qr_code"], "https://qr.alipay.com/bax0");
        assert_eq!(
            verify_response(
                &raw.replace("bax0", "bax1"),
                "alipay.trade.precreate",
                &public
            ),
            Err(AlipayError::BadSignature)
        );
        assert!(matches!(
            verify_response(&raw, "alipay.trade.query", &public),
            Err(AlipayError::NoResponse(_))
        ));
        let unsigned = format!(r#"{{"alipay_trade_precreate_response":{body}}}"#);
        assert_eq!(
            verify_response(&unsigned, "alipay.trade.precreate", &public),
            Err(AlipayError::Missing("sign"))
        );
        assert!(matches!(
            verify_response("<html>", "alipay.trade.precreate", &public),
            Err(AlipayError::NotJson(_))
        ));
    }

    fn provider() -> AlipayProvider {
        // The test merchant key plays both the app's key and Alipay's.
        let credentials = json!({
            "appId": "2021000000000000",
            "sellerId": "2088000000000000",
            "appPrivateKey": fixtures::MERCHANT_PRIVATE_PEM,
            "alipayPublicKey": fixtures::MERCHANT_PUBLIC_PEM,
        });
        AlipayProvider::new(
            Credentials::known(credentials.to_string(), Account::parse),
            "http://127.0.0.1:9/gateway.do",
            ProviderHttp::default(),
        )
    }

    /// A notification signed as Alipay signs it, with `changes` applied
    /// before signing.
    fn signed_notification(changes: &[(&str, &str)]) -> Vec<u8> {
        let key = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let mut fields: BTreeMap<String, String> = [
            ("app_id", "2021000000000000"),
            ("seller_id", "2088000000000000"),
            ("notify_id", "n-1"),
            ("out_trade_no", "pay1"),
            ("trade_no", "2026112222001400000000000001"),
            ("total_amount", "168.00"),
            ("trade_status", "TRADE_SUCCESS"),
            ("charset", "utf-8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in changes {
            fields.insert((*k).to_owned(), (*v).to_owned());
        }
        let content = signing_content(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
        fields.insert("sign".into(), key.sign(content.as_bytes()));
        fields.insert("sign_type".into(), "RSA2".into());
        form(&fields.into_iter().collect::<Vec<_>>())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callbacks_are_judged_after_the_signature() {
        let alipay = provider();
        match alipay
            .verify_callback(&signed_notification(&[]))
            .await
            .unwrap()
        {
            VerifiedCallback::Payment {
                notification_id,
                notification,
            } => {
                assert_eq!(notification_id, "n-1");
                assert_eq!(notification.payment_id, "pay1");
                assert_eq!(notification.amount, 16800);
                assert_eq!(notification.currency, "CNY");
                assert_eq!(notification.payment_status, NotifiedResult::Success);
            }
            other => panic!("{other:?}"),
        }
        for (field, value) in [
            ("app_id", "2021999999999999"),
            ("seller_id", "2088999999999999"),
        ] {
            assert!(
                matches!(
                    alipay
                        .verify_callback(&signed_notification(&[(field, value)]))
                        .await,
                    Err(VerifyError::Foreign(_))
                ),
                "{field}"
            );
        }
        assert!(matches!(
            alipay
                .verify_callback(&signed_notification(&[("trade_status", "WAIT_BUYER_PAY")]))
                .await,
            Ok(VerifiedCallback::Ignored { .. })
        ));
        assert!(matches!(
            alipay
                .verify_callback(&signed_notification(&[("total_amount", "168")]))
                .await,
            Err(VerifyError::Foreign(_))
        ));
        // Tampered after signing.
        let tampered = String::from_utf8(signed_notification(&[]))
            .unwrap()
            .replace("168.00", "1.00");
        assert!(matches!(
            alipay.verify_callback(tampered.as_bytes()).await,
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_gateway_is_unavailable_and_nothing_else() {
        let payment = Payment {
            payment_id: "pay1".into(),
            order_id: "o1".into(),
            user_id: "u1".into(),
            amount: 16800,
            currency: "CNY".into(),
            payment_method: PaymentMethod::Alipay,
            payment_status: domain::payments::PaymentStatus::Pending,
            payment_url: String::new(),
            qr_code: None,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: "2026-11-22T08:15:00Z".into(),
            provider_transaction_id: None,
            failure_reason: None,
            provider: NAME.into(),
            provider_reference: None,
            refunds: Default::default(),
        };
        assert!(matches!(
            provider().checkout(&payment, "https://api.example").await,
            Err(ProviderError::Unavailable(_))
        ));
        let usd = Payment {
            currency: "USD".into(),
            ..payment
        };
        assert!(matches!(
            provider().checkout(&usd, "https://api.example").await,
            Err(ProviderError::Refused(_))
        ));
    }
}
