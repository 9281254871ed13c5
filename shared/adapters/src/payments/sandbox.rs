//! The project's own payment provider, for local play and tests: checkouts
//! point at a sandbox page, and results come back through a signed callback.
//!
//! Signatures of its callbacks:
//! Header: `X-Payment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<raw body>")>`. Fields may come in any order with spaces around
//! them; unknown versions (`v0`, `v2`, …) are ignored, and several `v1`
//! values are allowed (any one may match: a provider rotating its secret
//! signs with both). The comparison is constant-time.

use domain::payments::{
    Checkout, Payment, PaymentProvider, ProviderError, RefundReceipt, VerifyError,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secrets::{Secret, SecretError};

pub const HEADER: &str = "x-payment-signature";
/// Oldest acceptable timestamp, in seconds before now: limits replays.
pub const MAX_AGE_SECONDS: i64 = 300;
/// Newest acceptable timestamp, in seconds after now: tolerates clock skew.
pub const MAX_SKEW_SECONDS: i64 = 60;
/// Longer headers are refused before any parsing.
const MAX_HEADER_BYTES: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Payment-Signature header is missing")]
    Missing,
    #[error("the X-Payment-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature timestamp is more than {MAX_AGE_SECONDS} s old")]
    Stale,
    #[error("the signature timestamp is more than {MAX_SKEW_SECONDS} s in the future")]
    FromTheFuture,
    #[error("the signature does not match the body")]
    Mismatch,
}

#[derive(Debug, PartialEq, Eq)]
struct SignatureHeader {
    timestamp: i64,
    v1: Vec<Vec<u8>>,
}

fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::Malformed("too long"));
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one t"));
                }
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed("t must be unix seconds"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is out of range"))?,
                );
            }
            "v1" => v1.push(
                decode_hex(value.trim())
                    .ok_or(SignatureError::Malformed("v1 must be 64 hex digits"))?,
            ),
            _ => {} // other schemes: not ours to judge
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("t is missing"))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("v1 is missing"));
    }
    Ok(SignatureHeader { timestamp, v1 })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a callback's signature header against its raw body at `now`.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    if header.timestamp < now - MAX_AGE_SECONDS {
        return Err(SignatureError::Stale);
    }
    if header.timestamp > now + MAX_SKEW_SECONDS {
        return Err(SignatureError::FromTheFuture);
    }
    let expected = mac(secret, header.timestamp, body);
    if header
        .v1
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header a provider sends for `body` at `timestamp` (the sandbox
/// provider and the tests sign with it).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
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

    /// The sandbox provider as a deployed function uses it: its signing
    /// secret is the SSM parameter named by `PAYMENT_SIGNING_SECRET_PARAM`,
    /// read when a callback or a refund first needs it.
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, SecretError> {
        let name = crate::config::required("PAYMENT_SIGNING_SECRET_PARAM")?;
        let base_url = std::env::var("PAYMENT_SANDBOX_URL")
            .unwrap_or_else(|_| "https://sandbox.pay.example".into());
        Ok(Self::with_secret(Secret::in_ssm(config, name), base_url))
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
        Ok(sign(self.secret().await?, timestamp, body))
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
        verify(self.secret().await?, signature, body, now)
            .map_err(|e| VerifyError::BadSignature(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"paymentId":"p1","paymentStatus":"SUCCESS"}"#;
    const NOW: i64 = 1_795_334_400;

    fn check(header: &str) -> Result<(), SignatureError> {
        verify(SECRET, Some(header), BODY, NOW)
    }

    #[test]
    fn known_vector() {
        // Computed independently: hmac.new(b"key", b'1795334400.{"a":1}', hashlib.sha256).hexdigest()
        let header = sign(b"key", 1_795_334_400, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1795334400,v1=59da85ae5b568880be78a3747a19d51cb291ea47d29f379a6567b6f79059efc1"
        );
    }

    #[test]
    fn valid_signatures_pass() {
        let good = sign(SECRET, NOW, BODY);
        assert_eq!(check(&good), Ok(()));
        // Spaces and reordered fields.
        let (t, v1) = good.split_once(',').unwrap();
        assert_eq!(check(&format!(" {v1} , {t} ")), Ok(()));
        // Unknown versions are ignored; a second v1 (secret rotation) is fine.
        assert_eq!(check(&format!("v0=abc,{good},v2=zzz")), Ok(()));
        let other = sign(b"old-secret", NOW, BODY);
        assert_eq!(check(&format!("{},{}", other, v1)), Ok(()));
        // Edges of the time window.
        assert_eq!(
            verify(
                SECRET,
                Some(&sign(SECRET, NOW - MAX_AGE_SECONDS, BODY)),
                BODY,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                SECRET,
                Some(&sign(SECRET, NOW + MAX_SKEW_SECONDS, BODY)),
                BODY,
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn forgeries_fail() {
        let good = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify(
                SECRET,
                Some(&good),
                br#"{"paymentId":"p2","paymentStatus":"SUCCESS"}"#,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&sign(b"wrong secret", NOW, BODY)),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = good.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(check(&flipped), Err(SignatureError::Mismatch));
        // A signature for another timestamp does not carry over.
        let (_, v1) = good.split_once(',').unwrap();
        assert_eq!(
            check(&format!("t={},{v1}", NOW - 1)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn time_window() {
        assert_eq!(
            check(&sign(SECRET, NOW - MAX_AGE_SECONDS - 1, BODY)),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(&sign(SECRET, NOW + MAX_SKEW_SECONDS + 1, BODY)),
            Err(SignatureError::FromTheFuture)
        );
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(
            verify(SECRET, None, BODY, NOW),
            Err(SignatureError::Missing)
        );
        let v1 = format!("v1={}", "ab".repeat(32));
        for header in [
            String::new(),
            "garbage".to_owned(),
            v1.clone(),
            format!("t={NOW}"),
            format!("t=abc,{v1}"),
            format!("t=-5,{v1}"),
            format!("t=99999999999999999999999,{v1}"),
            format!("t={NOW},t={NOW},{v1}"),
            format!("t={NOW},v1=xyz"),
            format!("t={NOW},v1={}", "ab".repeat(31)),
            format!("t={NOW},v1={}", "é".repeat(32)),
            format!("t={NOW},{v1},{}", "x=y,".repeat(400)),
        ] {
            assert!(
                matches!(check(&header), Err(SignatureError::Malformed(_))),
                "{header:?} -> {:?}",
                check(&header)
            );
        }
    }

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
