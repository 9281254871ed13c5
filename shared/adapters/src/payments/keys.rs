//! RSA keys as the providers hand them out, and SHA256withRSA (PKCS#1
//! v1.5) with them: Alipay's and WeChat Pay's request and notification
//! signatures. On ring, the TLS stack's own crypto.
//!
//! Formats accepted, because each provider's tools write another:
//! - private keys: PEM (`PRIVATE KEY` = PKCS#8, `RSA PRIVATE KEY` =
//!   PKCS#1), or the bare base64 DER Alipay's key tool prints (either kind);
//! - public keys: PEM `PUBLIC KEY` or bare base64 DER (SubjectPublicKeyInfo,
//!   what Alipay shows as "支付宝公钥"), or an X.509 certificate (WeChat Pay's
//!   platform certificates).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem};
use x509_cert::spki::SubjectPublicKeyInfoRef;

/// `rsaEncryption`, the only key algorithm either provider uses.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a key in PEM or base64 DER: {0}")]
    Encoding(String),
    #[error("not an RSA key of 2048 to 8192 bits: {0}")]
    NotRsa(String),
    #[error("not an X.509 certificate: {0}")]
    Certificate(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify with the provider's key")]
pub struct BadSignature;

/// A merchant's (or app's) private key: signs requests.
pub struct SigningKey(RsaKeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let der = der_of(text)?;
        RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .map(Self)
            .map_err(|e| KeyError::NotRsa(e.to_string()))
    }

    /// SHA256withRSA over `message`, base64 (both providers' encoding).
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.0.public().modulus_len()];
        // ring fails only for a message it cannot pad, which PKCS#1 v1.5
        // with SHA-256 never is for 2048-bit keys or larger.
        self.0
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("PKCS#1 v1.5 signing of a SHA-256 digest cannot fail");
        STANDARD.encode(signature)
    }
}

/// A provider's public key: verifies what the provider signed.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// PKCS#1 `RSAPublicKey` DER, what ring verifies with.
    rsa_public_key: Vec<u8>,
    /// Unix seconds; a certificate's key is valid only inside its validity.
    valid: Option<(i64, i64)>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("bytes", &self.rsa_public_key.len())
            .field("valid", &self.valid)
            .finish()
    }
}

impl VerifyingKey {
    /// A SubjectPublicKeyInfo, as PEM or bare base64 DER.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let der = der_of(text)?;
        let info = SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| KeyError::Encoding(e.to_string()))?;
        Self::from_info(&info, None)
    }

    /// The key of an X.509 certificate in PEM, with the certificate's serial
    /// number as WeChat Pay names it (upper-case hex, no leading zeros).
    pub fn from_certificate(pem: &str) -> Result<(String, Self), KeyError> {
        let cert = Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let serial: String = tbs
            .serial_number
            .as_bytes()
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| format!("{b:02X}"))
            .collect();
        let seconds = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
        let valid = (
            seconds(tbs.validity.not_before),
            seconds(tbs.validity.not_after),
        );
        let info = x509_cert::der::Encode::to_der(&tbs.subject_public_key_info)
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        let info = SubjectPublicKeyInfoRef::from_der(&info)
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        Ok((serial, Self::from_info(&info, Some(valid))?))
    }

    fn from_info(
        info: &SubjectPublicKeyInfoRef<'_>,
        valid: Option<(i64, i64)>,
    ) -> Result<Self, KeyError> {
        if info.algorithm.oid.to_string() != RSA_ENCRYPTION {
            return Err(KeyError::NotRsa(format!(
                "algorithm {}",
                info.algorithm.oid
            )));
        }
        let rsa_public_key = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::NotRsa("the key's bit string is not whole bytes".into()))?
            .to_vec();
        Ok(Self {
            rsa_public_key,
            valid,
        })
    }

    /// Whether a certificate's key may be used at `now` (a bare key always).
    pub fn valid_at(&self, now: i64) -> bool {
        self.valid
            .is_none_or(|(not_before, not_after)| (not_before..=not_after).contains(&now))
    }

    /// Checks a base64 SHA256withRSA signature over `message`.
    pub fn verify(&self, message: &[u8], signature_base64: &str) -> Result<(), BadSignature> {
        let signature = STANDARD
            .decode(signature_base64.trim())
            .map_err(|_| BadSignature)?;
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(message, &signature)
            .map_err(|_| BadSignature)
    }
}

/// The DER inside a PEM block, or bare base64 DER (line breaks allowed).
fn der_of(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        let (_label, der) = x509_cert::der::pem::decode_vec(text.as_bytes())
            .map_err(|e| KeyError::Encoding(e.to_string()))?;
        return Ok(der);
    }
    let compact: String = text.split_whitespace().collect();
    STANDARD
        .decode(compact)
        .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// Keys for tests and the provider simulators' fixtures: a fixed 2048-bit
/// pair, so that no test generates RSA keys (slow) or depends on a file
/// outside the repository.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const MERCHANT_PRIVATE_PEM: &str =
        include_str!("../../tests/vectors/test-merchant-key.pem");
    pub const MERCHANT_PUBLIC_PEM: &str =
        include_str!("../../tests/vectors/test-merchant-key.pub.pem");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_signs_and_verifies_in_every_format() {
        let private = SigningKey::from_text(fixtures::MERCHANT_PRIVATE_PEM).unwrap();
        let public = VerifyingKey::from_text(fixtures::MERCHANT_PUBLIC_PEM).unwrap();
        let signature = private.sign(b"message");
        assert_eq!(public.verify(b"message", &signature), Ok(()));
        assert_eq!(public.verify(b"messagE", &signature), Err(BadSignature));
        assert_eq!(public.verify(b"message", "not base64!"), Err(BadSignature));
        // The bare base64 body of the PEM is the same key.
        let bare: String = fixtures::MERCHANT_PUBLIC_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(VerifyingKey::from_text(&bare).unwrap(), public);
        assert!(format!("{private:?}").contains(".."));
    }

    #[test]
    fn junk_is_not_a_key() {
        assert!(matches!(
            SigningKey::from_text("abc"),
            Err(KeyError::Encoding(_) | KeyError::NotRsa(_))
        ));
        assert!(
            VerifyingKey::from_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(VerifyingKey::from_certificate(fixtures::MERCHANT_PUBLIC_PEM).is_err());
    }
}
