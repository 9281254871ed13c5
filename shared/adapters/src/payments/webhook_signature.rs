//! Stripe's webhook signature scheme, which the sandbox provider uses too.
//!
//! Header (`Stripe-Signature`, the sandbox's `X-Payment-Signature`):
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. Fields
//! may come in any order with spaces around them; unknown schemes (`v0`,
//! `v2`, …) are ignored, and several `v1` values are allowed: any one may
//! match (Stripe signs with the old and the new secret while one rolls).
//! The comparison is constant-time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Oldest acceptable timestamp, in seconds before now: limits replays
/// (Stripe's libraries' default tolerance).
pub const MAX_AGE_SECONDS: i64 = 300;
/// Newest acceptable timestamp, in seconds after now: tolerates clock skew.
pub const MAX_SKEW_SECONDS: i64 = 60;
/// Longer headers are refused before any parsing.
const MAX_HEADER_BYTES: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed: {0}")]
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
/// provider, the simulators and the tests sign with it).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
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
}
