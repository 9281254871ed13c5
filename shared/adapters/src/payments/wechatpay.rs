//! WeChat Pay API v3, as its gateway and its official SDKs speak it.
//!
//! - A request carries `Authorization: WECHATPAY2-SHA256-RSA2048
//!   mchid="..",nonce_str="..",timestamp="..",serial_no="..",signature=".."`,
//!   SHA256withRSA with the merchant's key over
//!   `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`.
//! - Answers and notifications carry `Wechatpay-Timestamp`, `-Nonce`,
//!   `-Signature` and `-Serial`: SHA256withRSA over
//!   `TIMESTAMP\nNONCE\nBODY\n` with the key the serial names, either a
//!   platform certificate's serial or a WeChat Pay public key's id
//!   (`PUB_KEY_ID_…`): WeChat Pay moves merchants from the first to the
//!   second gradually, so both are kept side by side.
//! - A notification's `resource` is encrypted with AEAD_AES_256_GCM under
//!   the merchant's APIv3 key.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::Deserialize;

use std::sync::Arc;

use bytes::Bytes;
use domain::clock;
use domain::payments::{
    Checkout, NotifiedResult, Payment, PaymentMethod, PaymentProvider, ProviderError,
    ProviderNotification, RefundOrder, RefundReceipt, RefundResult, RefundStatus, TradeState,
    VerifiedCallback, VerifyError,
};
use domain::withdrawals::{PayoutOrder, PayoutProvider, PayoutState};
use http_body_util::Full;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::http::{CallError, ProviderHttp, with_one_retry};
use super::keys::{SigningKey, VerifyingKey};
use crate::secrets::Credentials;

/// WeChat Pay's production API host; a parameter points it elsewhere (the
/// local simulator).
pub const API: &str = "https://api.mch.weixin.qq.com";

/// How far a signed timestamp may be from now, either way: WeChat Pay's SDKs
/// refuse 5 minutes or more.
pub const MAX_CLOCK_DISTANCE_SECONDS: i64 = 300;

pub const TIMESTAMP: &str = "wechatpay-timestamp";
pub const NONCE: &str = "wechatpay-nonce";
pub const SIGNATURE: &str = "wechatpay-signature";
pub const SERIAL: &str = "wechatpay-serial";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatPayError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the Wechatpay-Timestamp header is not unix seconds")]
    BadTimestamp,
    #[error("the signature's timestamp is {0} s from now: 300 s or more is refused")]
    Stale(i64),
    #[error("no WeChat Pay key has serial {0:?}")]
    UnknownSerial(String),
    #[error("the WeChat Pay key {0:?} is outside its certificate's validity")]
    ExpiredKey(String),
    #[error("the signature does not verify with WeChat Pay's key")]
    BadSignature,
    #[error("the notification is not WeChat Pay's JSON: {0}")]
    NotJson(String),
    #[error("the resource is not {0}")]
    Algorithm(String),
    #[error("the resource does not decrypt with the APIv3 key")]
    Undecryptable,
    #[error("the APIv3 key must be 32 bytes")]
    ApiV3Key,
}

/// The value of the `Authorization` header of a call.
#[allow(clippy::too_many_arguments)] // the protocol's own fields
pub fn authorization(
    mchid: &str,
    serial_no: &str,
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    body: &str,
    timestamp: i64,
    nonce: &str,
) -> String {
    let message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
    let signature = key.sign(message.as_bytes());
    format!(
        r#"WECHATPAY2-SHA256-RSA2048 mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",serial_no="{serial_no}",signature="{signature}""#
    )
}

/// A serial as the map holds it: hex serials are written with and without
/// a leading zero digit (`0A1B…` by openssl, `A1B…` by others); the
/// number is the same.
fn serial_key(serial: &str) -> &str {
    serial.trim_start_matches('0')
}

/// WeChat Pay's keys by the serial (or public-key id) it signs with.
#[derive(Debug, Clone, Default)]
pub struct PlatformKeys(BTreeMap<String, VerifyingKey>);

impl PlatformKeys {
    /// Adds a platform certificate (PEM), named by its serial number.
    pub fn with_certificate(mut self, pem: &str) -> Result<Self, super::keys::KeyError> {
        let (serial, key) = VerifyingKey::from_certificate(pem)?;
        self.0.insert(serial_key(&serial).to_owned(), key);
        Ok(self)
    }

    /// Adds a WeChat Pay public key (PEM) under its id (`PUB_KEY_ID_…`).
    pub fn with_public_key(mut self, id: &str, pem: &str) -> Result<Self, super::keys::KeyError> {
        self.0
            .insert(serial_key(id).to_owned(), VerifyingKey::from_text(pem)?);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Verifies a signed answer or notification: the timestamp window
    /// first (a replay is refused without any RSA work), then the
    /// signature with the key its serial names. `header` looks a header up
    /// by its lower-case name.
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WechatPayError> {
        let get = |name: &'static str| header(name).ok_or(WechatPayError::MissingHeader(name));
        let timestamp = get(TIMESTAMP)?;
        let nonce = get(NONCE)?;
        let signature = get(SIGNATURE)?;
        let serial = get(SERIAL)?;
        let seconds: i64 = timestamp
            .parse()
            .ok()
            .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(WechatPayError::BadTimestamp)?;
        let distance = now.saturating_sub(seconds).saturating_abs();
        if distance >= MAX_CLOCK_DISTANCE_SECONDS {
            return Err(WechatPayError::Stale(distance));
        }
        let key = self
            .0
            .get(serial_key(serial))
            .ok_or_else(|| WechatPayError::UnknownSerial(serial.to_owned()))?;
        if !key.valid_at(now) {
            return Err(WechatPayError::ExpiredKey(serial.to_owned()));
        }
        let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
        for part in [timestamp.as_bytes(), nonce.as_bytes(), body] {
            message.extend_from_slice(part);
            message.push(b'\n');
        }
        key.verify(&message, signature)
            .map_err(|_| WechatPayError::BadSignature)
    }
}

/// A notification's envelope (`resource` still encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notification {
    pub id: String,
    pub event_type: String,
    #[serde(default)]
    pub create_time: String,
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Resource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
}

impl Notification {
    pub fn parse(body: &[u8]) -> Result<Self, WechatPayError> {
        serde_json::from_slice(body).map_err(|e| WechatPayError::NotJson(e.to_string()))
    }
}

/// The APIv3 key: decrypts notification resources.
#[derive(Clone)]
pub struct ApiV3Key(Vec<u8>);

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(..)")
    }
}

impl ApiV3Key {
    /// A merchant's APIv3 key: 32 bytes, set in the merchant platform.
    pub fn new(key: &[u8]) -> Result<Self, WechatPayError> {
        if key.len() == 32 {
            Ok(Self(key.to_vec()))
        } else {
            Err(WechatPayError::ApiV3Key)
        }
    }

    /// Decrypts a resource (`AEAD_AES_256_GCM`: base64 ciphertext with its
    /// 16-byte tag at the end, a 12-byte nonce, the associated data).
    pub fn decrypt(&self, resource: &Resource) -> Result<Vec<u8>, WechatPayError> {
        if resource.algorithm != "AEAD_AES_256_GCM" {
            return Err(WechatPayError::Algorithm(resource.algorithm.clone()));
        }
        decrypt_gcm(&self.0, resource)
    }
}

/// AES-GCM with the key's own size. Real APIv3 keys are 32 bytes
/// (AES-256); WeChat Pay's Go SDK's published notification was made with
/// a 16-byte test key, so its test checks this with AES-128.
fn decrypt_gcm(key: &[u8], resource: &Resource) -> Result<Vec<u8>, WechatPayError> {
    let algorithm = match key.len() {
        32 => &AES_256_GCM,
        16 => &AES_128_GCM,
        _ => return Err(WechatPayError::ApiV3Key),
    };
    let key =
        LessSafeKey::new(UnboundKey::new(algorithm, key).map_err(|_| WechatPayError::ApiV3Key)?);
    let nonce = Nonce::try_assume_unique_for_key(resource.nonce.as_bytes())
        .map_err(|_| WechatPayError::Undecryptable)?;
    let mut data = STANDARD
        .decode(&resource.ciphertext)
        .map_err(|_| WechatPayError::Undecryptable)?;
    let plain = key
        .open_in_place(
            nonce,
            Aad::from(resource.associated_data.as_bytes()),
            &mut data,
        )
        .map_err(|_| WechatPayError::Undecryptable)?;
    Ok(plain.to_vec())
}

/// A decrypted `TRANSACTION.*` resource: the fields the checks need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: String,
    pub trade_state: String,
    pub amount: TransactionAmount,
}

/// A REFUND.* notification's decrypted resource: the fields we act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundResource {
    pub mchid: String,
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub refund_id: String,
    /// SUCCESS, CLOSED or ABNORMAL.
    pub refund_status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionAmount {
    /// Fen: WeChat Pay's amounts are integers of the minor unit.
    pub total: i64,
    #[serde(default = "domain::money::default_currency")]
    pub currency: String,
}

/// The merchant's credentials, one SSM SecureString parameter of JSON:
/// `{"mchid", "appid", "merchantSerialNo", "merchantPrivateKey",
/// "apiV3Key", "platformCertificates": [PEM…], "publicKeyId",
/// "publicKey"}`: platform certificates, a WeChat Pay public key, or both
/// while WeChat Pay moves the merchant from one to the other.
pub struct Account {
    pub mchid: String,
    pub appid: String,
    merchant_serial_no: String,
    merchant_key: SigningKey,
    api_v3_key: ApiV3Key,
    platform_keys: PlatformKeys,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Stored {
            mchid: String,
            appid: String,
            merchant_serial_no: String,
            merchant_private_key: String,
            api_v3_key: String,
            #[serde(default)]
            platform_certificates: Vec<String>,
            #[serde(default)]
            public_key_id: Option<String>,
            #[serde(default)]
            public_key: Option<String>,
        }
        let stored: Stored =
            serde_json::from_slice(json).map_err(|e| format!("WeChat Pay credentials: {e}"))?;
        let mut platform_keys = PlatformKeys::default();
        for pem in &stored.platform_certificates {
            platform_keys = platform_keys
                .with_certificate(pem)
                .map_err(|e| format!("platformCertificates: {e}"))?;
        }
        if let (Some(id), Some(pem)) = (&stored.public_key_id, &stored.public_key) {
            platform_keys = platform_keys
                .with_public_key(id, pem)
                .map_err(|e| format!("publicKey: {e}"))?;
        }
        if platform_keys.is_empty() {
            return Err(
                "WeChat Pay credentials hold no platform certificate and no public key".into(),
            );
        }
        Ok(Self {
            merchant_key: SigningKey::from_text(&stored.merchant_private_key)
                .map_err(|e| format!("merchantPrivateKey: {e}"))?,
            api_v3_key: ApiV3Key::new(stored.api_v3_key.as_bytes())
                .map_err(|e| format!("apiV3Key: {e}"))?,
            merchant_serial_no: stored.merchant_serial_no,
            mchid: stored.mchid,
            appid: stored.appid,
            platform_keys,
        })
    }
}

/// The provider's name on payments it took.
pub const NAME: &str = "wechatpay";

/// `WECHAT_PAY` payments at WeChat Pay: Native pay (a `code_url` to show as
/// a QR code), refunds, queries and closing.
pub struct WechatPayProvider {
    account: Credentials<Account>,
    api: String,
    http: ProviderHttp,
}

impl std::fmt::Debug for WechatPayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayProvider")
            .field("account", &self.account)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl WechatPayProvider {
    pub fn new(account: Credentials<Account>, api: impl Into<String>, http: ProviderHttp) -> Self {
        Self {
            account,
            api: api.into(),
            http,
        }
    }

    /// The provider as a deployed function uses it: credentials in the SSM
    /// parameter `WECHATPAY_CREDENTIALS_PARAM`, the API host
    /// `WECHATPAY_API` (WeChat Pay's own by default).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, crate::config::MissingSetting> {
        let name = crate::config::required("WECHATPAY_CREDENTIALS_PARAM")?;
        let api = std::env::var("WECHATPAY_API").unwrap_or_else(|_| API.into());
        Ok(Self::new(
            Credentials::in_ssm(config, name, Account::parse),
            api,
            ProviderHttp::default(),
        ))
    }

    async fn account(&self) -> Result<Arc<Account>, ProviderError> {
        self.account.get().await.map_err(|e| e.for_provider(NAME))
    }

    /// Verifies with the platform keys, re-reading them once when the
    /// signature fails (or names an unknown serial) with a cached copy old
    /// enough for a rotation to be waiting.
    async fn verified<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str> + Copy,
        body: &[u8],
        now: i64,
    ) -> Result<Arc<Account>, VerifyError> {
        let account = self.account().await?;
        match account.platform_keys.verify(header, body, now) {
            Ok(()) => Ok(account),
            Err(err @ (WechatPayError::BadSignature | WechatPayError::UnknownSerial(_))) => {
                match self
                    .account
                    .refresh()
                    .await
                    .map_err(|e| e.for_provider(NAME))?
                {
                    Some(newer) => {
                        newer
                            .platform_keys
                            .verify(header, body, now)
                            .map_err(|e| VerifyError::BadSignature(e.to_string()))?;
                        Ok(newer)
                    }
                    None => Err(VerifyError::BadSignature(err.to_string())),
                }
            }
            Err(err) => Err(VerifyError::BadSignature(err.to_string())),
        }
    }

    /// Verifies, decrypts and judges a notification: WeChat Pay's signature
    /// and timestamp first, then the resource (which only the APIv3 key
    /// opens), then the merchant and app, then the trade.
    pub async fn verify_callback<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str> + Copy,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedCallback, VerifyError> {
        let account = self.verified(header, body, now).await?;
        let envelope =
            Notification::parse(body).map_err(|e| VerifyError::Foreign(e.to_string()))?;
        let id = envelope.id.clone();
        let foreign = |why: String| VerifyError::Foreign(format!("notification {id}: {why}"));
        let plain = account
            .api_v3_key
            .decrypt(&envelope.resource)
            .map_err(|e| foreign(e.to_string()))?;
        if envelope.event_type.starts_with("REFUND.") {
            let refund: RefundResource =
                serde_json::from_slice(&plain).map_err(|e| foreign(format!("resource: {e}")))?;
            if refund.mchid != account.mchid {
                return Err(foreign("for another mchid".into()));
            }
            let (refund_status, failure_reason) = match refund.refund_status.as_str() {
                "SUCCESS" => (RefundStatus::Succeeded, None),
                "ABNORMAL" => (
                    RefundStatus::Failed,
                    Some("WeChat Pay could not pay the refund into the buyer's account (ABNORMAL)"),
                ),
                "CLOSED" => (
                    RefundStatus::Failed,
                    Some("WeChat Pay closed the refund (CLOSED)"),
                ),
                other => {
                    return Ok(VerifiedCallback::Ignored {
                        notification_id: id.clone(),
                        why: format!("refund_status {other}"),
                    });
                }
            };
            return Ok(VerifiedCallback::Refund {
                notification_id: id.clone(),
                result: RefundResult {
                    payment_id: refund.out_trade_no,
                    refund_id: refund.out_refund_no,
                    provider_refund_id: refund.refund_id,
                    refund_status,
                    failure_reason: failure_reason.map(str::to_owned),
                },
            });
        }
        if envelope.event_type != "TRANSACTION.SUCCESS" {
            return Ok(VerifiedCallback::Ignored {
                notification_id: id.clone(),
                why: format!("event {}", envelope.event_type),
            });
        }
        let transaction: Transaction =
            serde_json::from_slice(&plain).map_err(|e| foreign(format!("resource: {e}")))?;
        if transaction.mchid != account.mchid {
            return Err(foreign("for another mchid".into()));
        }
        if transaction.appid != account.appid {
            return Err(foreign("for another appid".into()));
        }
        if transaction.trade_state != "SUCCESS" {
            return Ok(VerifiedCallback::Ignored {
                notification_id: id.clone(),
                why: format!("trade_state {}", transaction.trade_state),
            });
        }
        Ok(VerifiedCallback::Payment {
            notification_id: id.clone(),
            notification: ProviderNotification {
                payment_id: transaction.out_trade_no,
                order_id: String::new(),
                payment_status: NotifiedResult::Success,
                amount: transaction.amount.total,
                currency: transaction.amount.currency,
                provider_transaction_id: transaction.transaction_id,
                failure_reason: None,
            },
        })
    }

    /// One signed call; a 2xx answer's signature is verified before its body
    /// is read. Every call here is keyed by `out_trade_no` or
    /// `out_refund_no`, so one retry of an unknown outcome cannot do a thing
    /// twice.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, CallError> {
        with_one_retry(path, true, || {
            self.call_once(method.clone(), path, body.as_ref())
        })
        .await
    }

    async fn call_once(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, CallError> {
        let account = self.account().await?;
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let now = clock::now().unix_timestamp();
        let nonce = domain::ids::new_id();
        let authorization = authorization(
            &account.mchid,
            &account.merchant_serial_no,
            &account.merchant_key,
            method.as_str(),
            path,
            &text,
            now,
            &nonce,
        );
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api.trim_end_matches('/')))
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "shop-backend/1 (+rust)")
            .body(Full::new(Bytes::from(text)))
            .map_err(|e| ProviderError::Unavailable(format!("request: {e}")))?;
        let answer = self.http.send(request).await?;
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            let header = |name: &str| answer.header(name);
            self.verified(header, &answer.body, clock::now().unix_timestamp())
                .await
                .map_err(|e| {
                    ProviderError::Unavailable(format!("WeChat Pay's answer to {path}: {e}"))
                })?;
            if answer.body.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&answer.body).map(Some).map_err(|e| {
                ProviderError::Unavailable(format!("WeChat Pay's answer to {path}: {e}")).into()
            });
        }
        #[derive(Deserialize, Default)]
        struct Failure {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let failure: Failure = serde_json::from_slice(&answer.body).unwrap_or_default();
        // 429 and 5xx: WeChat Pay is busy or failing; the outcome is unknown.
        if status == 429 || status >= 500 {
            return Err(ProviderError::Unavailable(format!(
                "WeChat Pay answered HTTP {status} {} {}",
                failure.code, failure.message
            ))
            .into());
        }
        Err(CallError::Business {
            provider: "WeChat Pay",
            status,
            code: failure.code,
            message: failure.message,
        })
    }
}

/// The merchant transfer scene a rebate payout is reported under
/// (`1000`, cash marketing), with the report WeChat Pay requires of it.
const TRANSFER_SCENE: &str = "1000";

/// Transfer refusals that are about the merchant, not the payee.
const RETRIED_ERRORS: [&str; 3] = ["NOT_ENOUGH", "FREQUENCY_LIMITED", "SYSTEM_ERROR"];

impl WechatPayProvider {
    /// A transfer bill's `state`.
    fn payout_state(bill: &serde_json::Value) -> PayoutState {
        match bill["state"].as_str() {
            Some("SUCCESS") => PayoutState::Paid {
                reference: bill["transfer_bill_no"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
            Some("FAIL" | "CANCELLED") => PayoutState::Failed {
                reason: format!(
                    "WeChat Pay {} {}",
                    bill["state"].as_str().unwrap_or_default(),
                    bill["fail_reason"].as_str().unwrap_or_default()
                )
                .trim()
                .to_owned(),
            },
            // ACCEPTED, PROCESSING, WAIT_USER_CONFIRM, TRANSFERING,
            // CANCELING: not finished.
            _ => PayoutState::InProgress,
        }
    }
}

impl PayoutProvider for WechatPayProvider {
    async fn transfer(&self, payout: &PayoutOrder) -> Result<PayoutState, ProviderError> {
        let account = self.account().await?;
        let answer = self
            .call(
                http::Method::POST,
                "/v3/fund-app/mch-transfer/transfer-bills",
                Some(json!({
                    "appid": account.appid,
                    "out_bill_no": payout.withdrawal_id,
                    "transfer_scene_id": TRANSFER_SCENE,
                    "openid": payout.account,
                    "transfer_amount": payout.amount,
                    "transfer_remark": "Rebate withdrawal",
                    "transfer_scene_report_infos": [
                        {"info_type": "活动名称", "info_content": "购物返利"},
                        {"info_type": "奖励说明", "info_content": "返利提现"},
                    ],
                })),
            )
            .await;
        match answer {
            Ok(bill) => Ok(Self::payout_state(&bill.unwrap_or_default())),
            // The merchant's balance or rate, not the payee: try later.
            Err(CallError::Business { code, message, .. })
                if RETRIED_ERRORS.contains(&code.as_str()) =>
            {
                Err(ProviderError::Unavailable(format!(
                    "WeChat Pay {code}: {message}"
                )))
            }
            // Any other 4xx: WeChat Pay refused the bill (no such openid, a
            // wrong parameter): nothing was transferred.
            Err(CallError::Business {
                code,
                message,
                status,
                ..
            }) if status < 500 => Ok(PayoutState::Failed {
                reason: format!("WeChat Pay {code}: {message}"),
            }),
            Err(err) => Err(err.into()),
        }
    }

    async fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<Option<PayoutState>, ProviderError> {
        let path = format!(
            "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{}",
            payout.withdrawal_id
        );
        match self.call(http::Method::GET, &path, None).await {
            Ok(bill) => Ok(Some(Self::payout_state(&bill.unwrap_or_default()))),
            Err(err) if err.is("NOT_FOUND") => Ok(None),
            Err(err) => Err(ProviderError::Unavailable(
                ProviderError::from(err).to_string(),
            )),
        }
    }
}

/// WeChat Pay's `time_expire`: RFC 3339 with the +08:00 offset.
fn time_expire(payment: &Payment) -> Option<String> {
    let until = OffsetDateTime::parse(&payment.expires_at, &Rfc3339).ok()?;
    until
        .to_offset(time::macros::offset!(+8))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
        ))
        .ok()
}

impl PaymentProvider for WechatPayProvider {
    fn name_for(&self, _method: PaymentMethod) -> &'static str {
        NAME
    }

    async fn checkout(
        &self,
        payment: &Payment,
        callback_base: &str,
    ) -> Result<Checkout, ProviderError> {
        if payment.currency != "CNY" {
            return Err(ProviderError::Refused(format!(
                "WeChat Pay Native takes CNY, not {}",
                payment.currency
            )));
        }
        let account = self.account().await?;
        let mut body = json!({
            "appid": account.appid,
            "mchid": account.mchid,
            "description": format!("Order {}", payment.order_id),
            "out_trade_no": payment.payment_id,
            "attach": payment.order_id,
            "notify_url": format!("{}/payments/notify/wechatpay", callback_base.trim_end_matches('/')),
            "amount": {"total": payment.amount, "currency": payment.currency},
        });
        // The trade cannot be paid after the order's window.
        if let Some(until) = time_expire(payment) {
            body["time_expire"] = json!(until);
        }
        let answer = self
            .call(
                http::Method::POST,
                "/v3/pay/transactions/native",
                Some(body),
            )
            .await?
            .unwrap_or_default();
        let code_url = answer["code_url"]
            .as_str()
            .ok_or_else(|| {
                ProviderError::Unavailable("WeChat Pay's answer has no code_url".into())
            })?
            .to_owned();
        Ok(Checkout {
            // Native pay has no web page: the code is the way to pay.
            payment_url: code_url.clone(),
            qr_code: Some(code_url),
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
                http::Method::POST,
                "/v3/refund/domestic/refunds",
                Some(json!({
                    "out_trade_no": payment.payment_id,
                    "out_refund_no": refund.refund_id,
                    "reason": refund.reason.chars().take(80).collect::<String>(),
                    "amount": {"refund": refund.amount, "total": payment.amount, "currency": payment.currency},
                })),
            )
            .await?
            .unwrap_or_default();
        let refund_status = match answer["status"].as_str() {
            Some("SUCCESS") => RefundStatus::Succeeded,
            // Completes asynchronously: REFUND.SUCCESS (or .ABNORMAL,
            // .CLOSED) follows.
            Some("PROCESSING") => RefundStatus::Pending,
            other => {
                return Err(ProviderError::Refused(format!(
                    "WeChat Pay refund status {other:?}"
                )));
            }
        };
        Ok(RefundReceipt {
            provider_refund_id: answer["refund_id"]
                .as_str()
                .unwrap_or(&refund.refund_id)
                .to_owned(),
            refund_status,
        })
    }

    async fn query(&self, payment: &Payment) -> Result<TradeState, ProviderError> {
        let account = self.account().await?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            payment.payment_id, account.mchid
        );
        let answer = match self.call(http::Method::GET, &path, None).await {
            Ok(answer) => answer.unwrap_or_default(),
            // Never created (the checkout failed after all): nothing to pay.
            Err(err) if err.is("ORDER_NOT_EXIST") => return Ok(TradeState::Closed),
            Err(err) => return Err(err.into()),
        };
        Ok(match answer["trade_state"].as_str() {
            Some("SUCCESS" | "REFUND") => TradeState::Paid {
                provider_transaction_id: answer["transaction_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                amount: answer["amount"]["total"].as_i64().ok_or_else(|| {
                    ProviderError::Unavailable("WeChat Pay's query answer has no amount".into())
                })?,
                currency: answer["amount"]["currency"]
                    .as_str()
                    .unwrap_or("CNY")
                    .to_owned(),
            },
            Some("CLOSED" | "REVOKED" | "PAYERROR") => TradeState::Closed,
            _ => TradeState::Open,
        })
    }

    async fn close(&self, payment: &Payment) -> Result<(), ProviderError> {
        let account = self.account().await?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            payment.payment_id
        );
        match self
            .call(
                http::Method::POST,
                &path,
                Some(json!({"mchid": account.mchid})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is("ORDER_NOT_EXIST") || err.is("ORDER_CLOSED") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::keys::fixtures;

    const NOTIFY: &str = include_str!("../../tests/vectors/wechatpay-notify.json");
    const AES: &str = include_str!("../../tests/vectors/wechatpay-aes-gcm.json");

    struct Vector {
        headers: BTreeMap<String, String>,
        body: String,
        keys: PlatformKeys,
        apiv3_key: String,
        decrypted: String,
        now: i64,
    }

    fn vector() -> Vector {
        let v: serde_json::Value = serde_json::from_str(NOTIFY).unwrap();
        let headers: BTreeMap<String, String> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
            .collect();
        let now = headers[TIMESTAMP].parse::<i64>().unwrap() + 10;
        Vector {
            body: v["body"].as_str().unwrap().to_owned(),
            keys: PlatformKeys::default()
                .with_certificate(v["platform_certificate_pem"].as_str().unwrap())
                .unwrap(),
            apiv3_key: v["apiv3_key"].as_str().unwrap().to_owned(),
            decrypted: v["decrypted_resource"].as_str().unwrap().to_owned(),
            headers,
            now,
        }
    }

    fn check(
        v: &Vector,
        headers: &BTreeMap<String, String>,
        body: &str,
        now: i64,
    ) -> Result<(), WechatPayError> {
        v.keys.verify(
            |name| headers.get(name).map(String::as_str),
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn wechat_pays_own_notification_verifies_and_decrypts() {
        let v = vector();
        assert_eq!(check(&v, &v.headers, &v.body, v.now), Ok(()));
        let notification = Notification::parse(v.body.as_bytes()).unwrap();
        assert_eq!(notification.id, "3119dfba-e649-5eec-ab1e-3412bc4d2e17");
        let plain = decrypt_gcm(v.apiv3_key.as_bytes(), &notification.resource).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), v.decrypted);
    }

    #[test]
    fn wechat_pays_notification_fails_once_touched() {
        let v = vector();
        // One changed byte of the body.
        let tampered = v.body.replacen("签约成功", "签约失败", 1);
        assert_eq!(
            check(&v, &v.headers, &tampered, v.now),
            Err(WechatPayError::BadSignature)
        );
        // Another nonce or timestamp than was signed.
        let mut headers = v.headers.clone();
        headers.insert(NONCE.into(), "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBZ".into());
        assert_eq!(
            check(&v, &headers, &v.body, v.now),
            Err(WechatPayError::BadSignature)
        );
        // Stale: 300 s is refused, 299 s is not (in both directions).
        let signed_at: i64 = v.headers[TIMESTAMP].parse().unwrap();
        assert_eq!(
            check(&v, &v.headers, &v.body, signed_at + 300),
            Err(WechatPayError::Stale(300))
        );
        assert_eq!(
            check(&v, &v.headers, &v.body, signed_at - 300),
            Err(WechatPayError::Stale(300))
        );
        assert_eq!(check(&v, &v.headers, &v.body, signed_at + 299), Ok(()));
        assert_eq!(check(&v, &v.headers, &v.body, signed_at - 299), Ok(()));
        // Another key under the same serial.
        let other = PlatformKeys::default()
            .with_public_key("D7CE59D1F522D701", fixtures::MERCHANT_PUBLIC_PEM)
            .unwrap();
        assert_eq!(
            other.verify(
                |n| v.headers.get(n).map(String::as_str),
                v.body.as_bytes(),
                v.now
            ),
            Err(WechatPayError::BadSignature)
        );
        // A serial we do not hold.
        let mut headers = v.headers.clone();
        headers.insert(SERIAL.into(), "PUB_KEY_ID_0000".into());
        assert_eq!(
            check(&v, &headers, &v.body, v.now),
            Err(WechatPayError::UnknownSerial("PUB_KEY_ID_0000".into()))
        );
        // Each header missing in turn.
        for name in [TIMESTAMP, NONCE, SIGNATURE, SERIAL] {
            let mut headers = v.headers.clone();
            headers.remove(name);
            assert_eq!(
                check(&v, &headers, &v.body, v.now),
                Err(WechatPayError::MissingHeader(name))
            );
        }
        let mut headers = v.headers.clone();
        headers.insert(TIMESTAMP.into(), "+1624523846".into());
        assert_eq!(
            check(&v, &headers, &v.body, v.now),
            Err(WechatPayError::BadTimestamp)
        );
        // Outside the certificate's validity (2021-04-27 to 2031-04-25).
        let late = 2_000_000_000; // 2033-05-18
        let mut headers = v.headers.clone();
        headers.insert(TIMESTAMP.into(), late.to_string());
        assert_eq!(
            check(&v, &headers, &v.body, late),
            Err(WechatPayError::ExpiredKey("D7CE59D1F522D701".into()))
        );
    }

    #[test]
    fn a_wrong_key_or_tampered_resource_does_not_decrypt() {
        let v = vector();
        let notification = Notification::parse(v.body.as_bytes()).unwrap();
        assert_eq!(
            decrypt_gcm(b"testMchAPIv3Key1", &notification.resource),
            Err(WechatPayError::Undecryptable)
        );
        let mut resource = notification.resource.clone();
        resource.associated_data = "payscorf".into();
        assert_eq!(
            decrypt_gcm(v.apiv3_key.as_bytes(), &resource),
            Err(WechatPayError::Undecryptable)
        );
    }

    #[test]
    fn the_32_byte_vector_decrypts_with_aes_256() {
        let v: serde_json::Value = serde_json::from_str(AES).unwrap();
        let key = ApiV3Key::new(v["apiv3_key"].as_str().unwrap().as_bytes()).unwrap();
        let resource = Resource {
            algorithm: "AEAD_AES_256_GCM".into(),
            ciphertext: v["ciphertext_base64"].as_str().unwrap().into(),
            associated_data: v["associated_data"].as_str().unwrap().into(),
            nonce: v["nonce"].as_str().unwrap().into(),
        };
        assert_eq!(
            key.decrypt(&resource).unwrap(),
            v["plaintext"].as_str().unwrap().as_bytes()
        );
        let mut flipped = resource.clone();
        flipped.ciphertext = flipped.ciphertext.replacen('u', "v", 1);
        assert_eq!(key.decrypt(&flipped), Err(WechatPayError::Undecryptable));
        let other = Resource {
            algorithm: "AEAD_SM4_GCM".into(),
            ..resource
        };
        assert!(matches!(
            key.decrypt(&other),
            Err(WechatPayError::Algorithm(_))
        ));
        assert!(matches!(
            ApiV3Key::new(b"short"),
            Err(WechatPayError::ApiV3Key)
        ));
    }

    #[test]
    fn requests_are_signed_over_the_five_lines() {
        let key = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let public = VerifyingKey::from_text(fixtures::MERCHANT_PUBLIC_PEM).unwrap();
        let body = r#"{"mchid":"1900000001"}"#;
        let header = authorization(
            "1900000001",
            "5157F09EFDC096DE",
            &key,
            "POST",
            "/v3/pay/transactions/native",
            body,
            1_795_334_400,
            "n0nce",
        );
        let signature = header
            .split("signature=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        assert!(header.starts_with(r#"WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="n0nce",timestamp="1795334400",serial_no="5157F09EFDC096DE",signature=""#));
        let message = format!("POST\n/v3/pay/transactions/native\n1795334400\nn0nce\n{body}\n");
        assert!(public.verify(message.as_bytes(), signature).is_ok());
        // A WeChat Pay public key (not a certificate) verifies what its id names.
        let keys = PlatformKeys::default()
            .with_public_key("PUB_KEY_ID_0114", fixtures::MERCHANT_PUBLIC_PEM)
            .unwrap();
        let answer = b"{\"code_url\":\"weixin://wxpay/bizpayurl?pr=x\"}";
        let mut signed = b"1795334400\nabc\n".to_vec();
        signed.extend_from_slice(answer);
        signed.push(b'\n');
        let headers: BTreeMap<&str, String> = [
            (TIMESTAMP, "1795334400".to_owned()),
            (NONCE, "abc".to_owned()),
            (SIGNATURE, key.sign(&signed)),
            (SERIAL, "PUB_KEY_ID_0114".to_owned()),
        ]
        .into();
        assert_eq!(
            keys.verify(
                |n| headers.get(n).map(String::as_str),
                answer,
                1_795_334_401
            ),
            Ok(())
        );
    }

    const API_V3_KEY: &str = "0123456789abcdef0123456789abcdef";

    fn provider() -> WechatPayProvider {
        // The test merchant key plays the merchant's key and WeChat Pay's.
        let credentials = serde_json::json!({
            "mchid": "1900000001",
            "appid": "wx0000000000000001",
            "merchantSerialNo": "5157F09EFDC096DE",
            "merchantPrivateKey": fixtures::MERCHANT_PRIVATE_PEM,
            "apiV3Key": API_V3_KEY,
            "publicKeyId": "PUB_KEY_ID_0114",
            "publicKey": fixtures::MERCHANT_PUBLIC_PEM,
        });
        WechatPayProvider::new(
            Credentials::known(credentials.to_string(), Account::parse),
            "http://127.0.0.1:9",
            ProviderHttp::default(),
        )
    }

    /// A notification as WeChat Pay sends it: the transaction encrypted,
    /// the envelope signed at `at`.
    fn signed(
        event: &str,
        transaction: serde_json::Value,
        at: i64,
    ) -> (BTreeMap<&'static str, String>, String) {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, API_V3_KEY.as_bytes()).unwrap());
        let mut data = transaction.to_string().into_bytes();
        key.seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(b"0123456789ab").unwrap(),
            Aad::from(b"transaction"),
            &mut data,
        )
        .unwrap();
        let body = serde_json::json!({
            "id": "EV-1", "create_time": "2026-11-22T16:00:00+08:00", "event_type": event,
            "resource_type": "encrypt-resource", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                          "ciphertext": STANDARD.encode(&data), "associated_data": "transaction",
                          "nonce": "0123456789ab"},
        })
        .to_string();
        let signer = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let headers = [
            (TIMESTAMP, at.to_string()),
            (NONCE, "n1".to_owned()),
            (
                SIGNATURE,
                signer.sign(format!("{at}\nn1\n{body}\n").as_bytes()),
            ),
            (SERIAL, "PUB_KEY_ID_0114".to_owned()),
        ]
        .into();
        (headers, body)
    }

    fn transaction() -> serde_json::Value {
        serde_json::json!({
            "appid": "wx0000000000000001", "mchid": "1900000001", "out_trade_no": "pay1",
            "transaction_id": "4200000000202611220000000001", "trade_state": "SUCCESS",
            "trade_type": "NATIVE", "amount": {"total": 16800, "payer_total": 16800, "currency": "CNY"},
        })
    }

    async fn judge(
        headers: &BTreeMap<&'static str, String>,
        body: &str,
        now: i64,
    ) -> Result<VerifiedCallback, VerifyError> {
        provider()
            .verify_callback(|n| headers.get(n).map(String::as_str), body.as_bytes(), now)
            .await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callbacks_are_decrypted_and_judged_after_the_signature() {
        let now = 1_795_334_400;
        let (headers, body) = signed("TRANSACTION.SUCCESS", transaction(), now);
        match judge(&headers, &body, now + 5).await.unwrap() {
            VerifiedCallback::Payment {
                notification_id,
                notification,
            } => {
                assert_eq!(notification_id, "EV-1");
                assert_eq!(notification.payment_id, "pay1");
                assert_eq!(notification.amount, 16800);
                assert_eq!(
                    notification.provider_transaction_id,
                    "4200000000202611220000000001"
                );
            }
            other => panic!("{other:?}"),
        }
        // Stale, tampered.
        assert!(matches!(
            judge(&headers, &body, now + 300).await,
            Err(VerifyError::BadSignature(_))
        ));
        let tampered = body.replacen("EV-1", "EV-2", 1);
        assert!(matches!(
            judge(&headers, &tampered, now).await,
            Err(VerifyError::BadSignature(_))
        ));
        // Another merchant or app, signed and encrypted correctly.
        for (field, value) in [("mchid", "1900009999"), ("appid", "wx9999")] {
            let mut other = transaction();
            other[field] = serde_json::json!(value);
            let (headers, body) = signed("TRANSACTION.SUCCESS", other, now);
            assert!(
                matches!(
                    judge(&headers, &body, now).await,
                    Err(VerifyError::Foreign(_))
                ),
                "{field}"
            );
        }
        // Other events and states are acknowledged and ignored.
        let (headers, body) = signed("TRANSACTION.CLOSED", transaction(), now);
        assert!(matches!(
            judge(&headers, &body, now).await,
            Ok(VerifiedCallback::Ignored { .. })
        ));
        let mut unpaid = transaction();
        unpaid["trade_state"] = serde_json::json!("NOTPAY");
        let (headers, body) = signed("TRANSACTION.SUCCESS", unpaid, now);
        assert!(matches!(
            judge(&headers, &body, now).await,
            Ok(VerifiedCallback::Ignored { .. })
        ));
    }

    #[tokio::test]
    async fn refund_results_name_our_refund_and_say_how_it_ended() {
        let now = clock::now().unix_timestamp();
        let refund = |status: &str| {
            serde_json::json!({
                "mchid": "1900000001", "out_trade_no": "pay1", "transaction_id": "4200000000202611220000000001",
                "out_refund_no": "pay1-whole", "refund_id": "50000000382019052709732678859",
                "refund_status": status, "success_time": "2026-11-22T16:00:00+08:00",
                "amount": {"total": 16800, "refund": 16800, "payer_total": 16800, "payer_refund": 16800},
            })
        };
        for (event, status, expected) in [
            ("REFUND.SUCCESS", "SUCCESS", RefundStatus::Succeeded),
            ("REFUND.ABNORMAL", "ABNORMAL", RefundStatus::Failed),
            ("REFUND.CLOSED", "CLOSED", RefundStatus::Failed),
        ] {
            let (headers, body) = signed(event, refund(status), now);
            match judge(&headers, &body, now).await {
                Ok(VerifiedCallback::Refund { result, .. }) => {
                    assert_eq!(result.payment_id, "pay1");
                    assert_eq!(result.refund_id, "pay1-whole");
                    assert_eq!(result.provider_refund_id, "50000000382019052709732678859");
                    assert_eq!(result.refund_status, expected, "{event}");
                    assert_eq!(
                        result.failure_reason.is_some(),
                        expected == RefundStatus::Failed
                    );
                }
                other => panic!("{event}: {other:?}"),
            }
        }
        // Another merchant's refund, and a tampered one, are refused.
        let mut other = refund("SUCCESS");
        other["mchid"] = serde_json::json!("1900009999");
        let (headers, body) = signed("REFUND.SUCCESS", other, now);
        assert!(matches!(
            judge(&headers, &body, now).await,
            Err(VerifyError::Foreign(_))
        ));
        let (headers, body) = signed("REFUND.SUCCESS", refund("SUCCESS"), now);
        let tampered = body.replacen("EV-1", "EV-2", 1);
        assert!(matches!(
            judge(&headers, &tampered, now).await,
            Err(VerifyError::BadSignature(_))
        ));
    }
}
