//! The providers' callbacks as the providers send them, for the Lambda
//! bench: test credentials in the shape each callback loads from SSM, and
//! each sample event (`events/<callback>.json`) signed at the moment it is
//! sent, as Alipay (RSA2 over the sorted form), WeChat Pay (RSA over the
//! timestamp, nonce and body, the resource sealed with AES-256-GCM under the
//! APIv3 key), Stripe and our sandbox provider (HMAC-SHA256 of the
//! timestamp and body) sign. So a
//! callback's cold start pays what it pays on AWS: loading its credentials,
//! parsing the keys, verifying the signature, decrypting, then the payment.
//!
//! The RSA keys are the repository's test keys
//! (`shared/adapters/tests/vectors/`): the provider signs with
//! `test-other-key.pem`, and the callback knows its public half. Signatures
//! carry the current time: WeChat Pay's and Stripe's are refused after
//! 300 s, so each event is signed when it is sent.

use adapters::payments::alipay::signing_content;
use adapters::payments::keys::SigningKey;
use adapters::payments::webhook_signature;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

const ALIPAY_PARAM: &str = "/bench/alipay";
const WECHATPAY_PARAM: &str = "/bench/wechatpay";
const STRIPE_PARAM: &str = "/bench/stripe";
const WECHATPAY_KEY_ID: &str = "PUB_KEY_ID_0114232019";
const API_V3_KEY: &str = "bench-apiv3-key-of-32-characters";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_bench";
/// The sandbox's signing secret and its parameter (`PAYMENT_SIGNING_SECRET_PARAM`).
const SANDBOX_PARAM: &str = "/bench/secret";
const SANDBOX_SECRET: &str = "bench-secret";

fn vector(name: &str) -> String {
    let path = crate::repo_root()
        .join("shared/adapters/tests/vectors")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Read and parsed once: the bench signs an event at every cold start.
fn provider_key() -> &'static SigningKey {
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| {
        SigningKey::from_text(&vector("test-other-key.pem")).expect("the test provider key")
    });
    &KEY
}

/// The environment that names each callback's credentials parameter.
pub fn env() -> Vec<(String, String)> {
    [
        ("PAYMENT_SIGNING_SECRET_PARAM", SANDBOX_PARAM),
        ("ALIPAY_CREDENTIALS_PARAM", ALIPAY_PARAM),
        ("WECHATPAY_CREDENTIALS_PARAM", WECHATPAY_PARAM),
        ("STRIPE_CREDENTIALS_PARAM", STRIPE_PARAM),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into()
}

/// The value of the SSM parameter `name`, if it is one the callbacks load.
/// Built once: the bench's SSM stub answers it inside the cold starts it
/// measures, so it must not read files there.
pub fn parameter(name: &str) -> Option<&'static str> {
    static PARAMETERS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(parameters);
    PARAMETERS.get(name).map(String::as_str)
}

fn parameters() -> HashMap<&'static str, String> {
    let merchant_key = vector("test-merchant-key.pem");
    let provider_public = vector("test-other-key.pub.pem");
    let alipay = json!({
        "appId": "2021000000000000",
        "sellerId": "2088000000000000",
        "appPrivateKey": merchant_key,
        "alipayPublicKey": provider_public,
    });
    let wechatpay = json!({
        "mchid": "1900000001",
        "appid": "wx0000000000000001",
        "merchantSerialNo": "5157F09EFDC096DE15EBE81A47057A7200000000",
        "merchantPrivateKey": merchant_key,
        "apiV3Key": API_V3_KEY,
        "publicKeyId": WECHATPAY_KEY_ID,
        "publicKey": provider_public,
    });
    let stripe = json!({"secretKey": "sk_test_bench", "webhookSecret": STRIPE_WEBHOOK_SECRET});
    [
        (ALIPAY_PARAM, alipay.to_string()),
        (WECHATPAY_PARAM, wechatpay.to_string()),
        (STRIPE_PARAM, stripe.to_string()),
        (SANDBOX_PARAM, SANDBOX_SECRET.to_owned()),
    ]
    .into()
}

/// `template` (an API Gateway event of `callback`) with its body and
/// headers signed now; `None` for a function that is not a callback.
pub fn signed_now(callback: &str, template: &[u8]) -> Option<Vec<u8>> {
    let mut event: Value = serde_json::from_slice(template).expect("an API Gateway event");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (body, headers): (String, Vec<(&str, String)>) = match callback {
        "alipay-notify" => (alipay_form(event["body"].as_str()?), vec![]),
        "wechatpay-notify" => wechatpay(event["body"].as_str()?, now),
        "stripe-notify" => hmac_signed(
            event["body"].as_str()?,
            STRIPE_WEBHOOK_SECRET,
            "stripe-signature",
            now,
        ),
        "payment-result-notify" => hmac_signed(
            event["body"].as_str()?,
            SANDBOX_SECRET,
            "x-payment-signature",
            now,
        ),
        _ => return None,
    };
    event["body"] = Value::String(body);
    for (name, value) in headers {
        event["headers"][name] = Value::String(value);
    }
    Some(serde_json::to_vec(&event).unwrap())
}

/// Stripe's scheme (our sandbox provider uses it under its own header).
fn hmac_signed(
    body: &str,
    secret: &str,
    header: &'static str,
    now: i64,
) -> (String, Vec<(&'static str, String)>) {
    let signature = webhook_signature::sign(secret.as_bytes(), now, body.as_bytes());
    (body.to_owned(), vec![(header, signature)])
}

/// The sample form with `sign_type=RSA2` and the provider's signature.
fn alipay_form(sample: &str) -> String {
    let params: Vec<(String, String)> = form_urlencoded::parse(sample.as_bytes())
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let content = signing_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
    let signature = provider_key().sign(content.as_bytes());
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .append_pair("sign_type", "RSA2")
        .append_pair("sign", &signature)
        .finish()
}

/// The sample notification with its resource sealed under the APIv3 key
/// (a successful transaction of the sample payment) and the headers of a
/// signature made now.
fn wechatpay(sample: &str, now: i64) -> (String, Vec<(&'static str, String)>) {
    let mut envelope: Value = serde_json::from_str(sample).expect("a WeChat Pay notification");
    let transaction = json!({
        "appid": "wx0000000000000001",
        "mchid": "1900000001",
        "out_trade_no": "01JDQ40M7R2S8T1V3W5X7Y9Z0C",
        "transaction_id": "4200000000202611220000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "success_time": "2026-11-22T16:00:00+08:00",
        "amount": {"total": 35590, "payer_total": 35590, "currency": "CNY", "payer_currency": "CNY"},
    });
    let resource_nonce = "bench0nonce0";
    let aad = "transaction";
    let mut sealed = transaction.to_string().into_bytes();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, API_V3_KEY.as_bytes()).unwrap())
        .seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(resource_nonce.as_bytes()).unwrap(),
            Aad::from(aad),
            &mut sealed,
        )
        .unwrap();
    envelope["resource"] = json!({
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": STANDARD.encode(&sealed),
        "associated_data": aad,
        "nonce": resource_nonce,
    });
    let body = envelope.to_string();
    let nonce = format!("bench{now}");
    let signature = provider_key().sign(format!("{now}\n{nonce}\n{body}\n").as_bytes());
    let headers = vec![
        ("wechatpay-timestamp", now.to_string()),
        ("wechatpay-nonce", nonce),
        ("wechatpay-serial", WECHATPAY_KEY_ID.to_owned()),
        ("wechatpay-signature", signature),
        (
            "wechatpay-signature-type",
            "WECHATPAY2-SHA256-RSA2048".to_owned(),
        ),
    ];
    (body, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapters::payments::alipay::{Account as AlipayAccount, AlipayProvider};
    use adapters::payments::http::ProviderHttp;
    use adapters::payments::stripe::{Account as StripeAccount, StripeProvider};
    use adapters::payments::wechatpay::{Account as WechatAccount, WechatPayProvider};
    use adapters::secrets::Credentials;
    use domain::payments::VerifiedCallback;

    fn event(callback: &str) -> Value {
        let sample =
            std::fs::read(crate::repo_root().join(format!("events/{callback}.json"))).unwrap();
        serde_json::from_slice(&signed_now(callback, &sample).unwrap()).unwrap()
    }

    fn stored(name: &str) -> Vec<u8> {
        parameter(name).unwrap().as_bytes().to_vec()
    }

    fn body(event: &Value) -> Vec<u8> {
        event["body"].as_str().unwrap().as_bytes().to_vec()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn accepted(verified: VerifiedCallback) -> bool {
        matches!(verified, VerifiedCallback::Payment { .. })
    }

    /// Each signed event is accepted by the callback's own verification with
    /// the credentials it loads, and refused once changed after signing.
    #[tokio::test]
    async fn each_signed_event_passes_its_callbacks_verification() {
        let http = ProviderHttp::default;
        let alipay = AlipayProvider::new(
            Credentials::known(stored(ALIPAY_PARAM), AlipayAccount::parse),
            "http://127.0.0.1:9",
            http(),
        );
        let form = body(&event("alipay-notify"));
        assert!(accepted(alipay.verify_callback(&form).await.unwrap()));
        let tampered = String::from_utf8(form)
            .unwrap()
            .replace("total_amount=355.90", "total_amount=0.01");
        assert!(alipay.verify_callback(tampered.as_bytes()).await.is_err());

        let wechatpay = WechatPayProvider::new(
            Credentials::known(stored(WECHATPAY_PARAM), WechatAccount::parse),
            "http://127.0.0.1:9",
            http(),
        );
        let event = event("wechatpay-notify");
        let header = |name: &str| event["headers"][name.to_ascii_lowercase()].as_str();
        let notification = body(&event);
        assert!(accepted(
            wechatpay
                .verify_callback(header, &notification, now())
                .await
                .unwrap()
        ));
        let mut tampered = notification.clone();
        tampered[10] ^= 1;
        assert!(
            wechatpay
                .verify_callback(header, &tampered, now())
                .await
                .is_err()
        );

        let stripe = StripeProvider::new(
            Credentials::known(stored(STRIPE_PARAM), StripeAccount::parse),
            "http://127.0.0.1:9",
            None,
            http(),
        );
        let event = self::event("stripe-notify");
        let signature = event["headers"]["stripe-signature"].as_str();
        assert!(accepted(
            stripe
                .verify_callback(signature, &body(&event), now())
                .await
                .unwrap()
        ));
        assert!(
            stripe
                .verify_callback(signature, b"{}", now())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_sandbox_callback_verifies_with_the_signing_secret() {
        let sandbox = adapters::payments::sandbox::SandboxProvider::new(
            stored(SANDBOX_PARAM),
            "http://127.0.0.1:9",
        );
        let event = event("payment-result-notify");
        let signature = event["headers"]["x-payment-signature"].as_str();
        assert!(
            sandbox
                .verify_notification(signature, &body(&event), now())
                .await
                .is_ok()
        );
        assert!(
            sandbox
                .verify_notification(signature, b"{}", now())
                .await
                .is_err()
        );
    }

    #[test]
    fn not_a_callback_is_left_alone() {
        assert!(signed_now("get-product-info", b"{}").is_none());
    }
}
