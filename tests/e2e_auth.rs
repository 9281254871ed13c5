//! Every route in the template, through the deployed stack, against tokens
//! that must not pass: none, garbage, `alg: none`, a genuine token issued to
//! another app client of the same pool (wrong audience), one from another
//! user pool (wrong issuer) and an expired one. The answer is 401 each time,
//! with nothing but the error in the body.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::json;
use system_tests::e2e::Stack;
use system_tests::template::Template;

/// A token with the user's real claims, unsigned (`alg: none`).
fn alg_none(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{payload}.")
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The control for the expired case: the token is genuine and has expired.
fn assert_expired(token: &str) {
    let claims = claims(token);
    let now = shared::clock::now().unix_timestamp();
    assert!(
        claims["exp"].as_i64().unwrap() <= now,
        "not yet expired: {claims}"
    );
}

#[tokio::test]
async fn no_route_accepts_a_bad_token() {
    let stack = Stack::from_env();
    let foreign = system_tests::required_env("E2E_FOREIGN_TOKEN");
    let foreign_pool = system_tests::required_env("E2E_FOREIGN_POOL_TOKEN");
    let expired = system_tests::required_env("E2E_EXPIRED_TOKEN");
    assert_expired(&expired);
    assert_ne!(
        claims(&foreign_pool)["iss"],
        claims(&stack.user_token)["iss"]
    );
    let routes = Template::load().routes();
    assert!(routes.len() >= 10, "{routes:?}");
    let bad_tokens = [
        ("no token", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("alg none", Some(alg_none(&stack.user_token))),
        ("wrong audience", Some(foreign)),
        ("wrong issuer", Some(foreign_pool)),
        ("expired", Some(expired)),
    ];
    for route in &routes {
        let path = route
            .path
            .replace("{productId}", "tea-longjing")
            .replace("{orderId}", "01JDQ3Z8G6W9Y4XKQ2T7V5N1AB")
            .replace("{paymentId}", "01JDQ40M7R2S8T1V3W5X7Y9Z0C");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let body = (route.method != "GET").then(|| json!({}));
        for (label, token) in &bad_tokens {
            let (status, answer) = stack
                .call(method.clone(), &path, token.as_deref(), body.clone())
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {path} with {label}: {answer}",
                route.method
            );
            let text = answer.to_string();
            for leak in ["stack", "panic", "arn:", "Exception", "at line"] {
                assert!(
                    !text.contains(leak),
                    "{} {path} with {label} leaks {leak:?}: {text}",
                    route.method
                );
            }
        }
    }
}

#[tokio::test]
async fn the_genuine_token_passes_the_authorizer() {
    // The control: the same request with the real token reaches the function.
    let stack = Stack::from_env();
    let (status, _) = stack
        .call(
            Method::GET,
            "/products?limit=1",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
