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

use super::keys::{SigningKey, VerifyingKey};

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

/// WeChat Pay's keys by the serial (or public-key id) it signs with.
#[derive(Debug, Clone, Default)]
pub struct PlatformKeys(BTreeMap<String, VerifyingKey>);

impl PlatformKeys {
    /// Adds a platform certificate (PEM), named by its serial number.
    pub fn with_certificate(mut self, pem: &str) -> Result<Self, super::keys::KeyError> {
        let (serial, key) = VerifyingKey::from_certificate(pem)?;
        self.0.insert(serial, key);
        Ok(self)
    }

    /// Adds a WeChat Pay public key (PEM) under its id (`PUB_KEY_ID_…`).
    pub fn with_public_key(mut self, id: &str, pem: &str) -> Result<Self, super::keys::KeyError> {
        self.0.insert(id.to_owned(), VerifyingKey::from_text(pem)?);
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
            .get(serial)
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionAmount {
    /// Fen: WeChat Pay's amounts are integers of the minor unit.
    pub total: i64,
    #[serde(default = "domain::money::default_currency")]
    pub currency: String,
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
}
