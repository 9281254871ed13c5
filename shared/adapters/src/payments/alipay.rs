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

use super::keys::{SigningKey, VerifyingKey};

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
}
