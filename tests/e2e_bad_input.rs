//! Every route that takes a body, through the deployed stack, fed what a
//! careless or hostile client sends: broken JSON, wrong types, missing and
//! unknown fields, huge numbers, unicode, a 1 MB body, the wrong content
//! type. Each answer is a 4xx with the conventions' error body
//! (`{"error": {"code", "message"}}`), never a 5xx, and nothing is written.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::Stack;
use system_tests::template::Template;

/// (label, content type, body) of each bad request.
fn bad_bodies() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let json = "application/json";
    vec![
        ("empty body", json, vec![]),
        ("broken JSON", json, b"{\"productId\": ".to_vec()),
        ("not an object", json, b"[1, 2, 3]".to_vec()),
        ("a bare string", json, b"\"hello\"".to_vec()),
        ("null", json, b"null".to_vec()),
        ("no fields", json, b"{}".to_vec()),
        (
            "wrong types",
            json,
            br#"{"productId": 7, "quantity": "two", "newStock": "many", "paymentMethod": 1, "orderId": [], "price": {}, "locale": 3}"#.to_vec(),
        ),
        (
            "huge numbers",
            json,
            br#"{"productId": "bad-input", "quantity": 1e400, "newStock": 99999999999999999999999999, "price": -1e308}"#.to_vec(),
        ),
        (
            "unknown fields",
            json,
            br#"{"productId": "bad-input", "quantity": 1, "isAdmin": true, "userId": "someone-else"}"#.to_vec(),
        ),
        (
            "unicode",
            json,
            "{\"productId\": \"茶\u{202e}\u{0000}🍵\", \"quantity\": 1, \"orderId\": \"\u{feff}\"}"
                .as_bytes()
                .to_vec(),
        ),
        ("invalid UTF-8", json, vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
        ("1 MB", json, {
            let mut body = b"{\"productId\": \"".to_vec();
            body.extend(std::iter::repeat_n(b'a', 1024 * 1024));
            body.extend(b"\"}");
            body
        }),
        ("form content type", "application/x-www-form-urlencoded", b"productId=tea&quantity=1".to_vec()),
        ("text content type", "text/plain", b"{\"productId\": \"tea-longjing\"}".to_vec()),
    ]
}

/// WeChat Pay's callback route answers in WeChat Pay's own shape, which
/// its resends key on: `{"code":"FAIL","message":..}`.
fn is_wechat_pay_failure(body: &Value) -> bool {
    body["code"] == "FAIL" && body["message"].as_str().is_some_and(|m| !m.is_empty())
}

fn is_error_body(body: &Value) -> bool {
    body["error"]["code"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
        && body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
}

#[tokio::test]
async fn every_route_with_a_body_answers_bad_input_with_a_4xx_error_body() {
    let stack = Stack::from_env();
    let routes: Vec<_> = Template::load()
        .routes()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(routes.len() >= 8, "{routes:?}");
    let product = stack.new_product("bad-input", 1500, 20).await;
    let before = stack.counters(&product).await;
    let mut answered = 0;
    for route in &routes {
        let path = route
            .path
            .replace("{productId}", &product)
            .replace("{orderId}", "01JDQ3Z8G6W9Y4XKQ2T7V5N1AB");
        // An admin passes every route's role check, so the body is what
        // gets judged (the provider callback is judged by its signature).
        let token = &stack.admin_token;
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        for (label, content_type, body) in bad_bodies() {
            // Every preference has a default, so `{}` is a complete
            // document (the defaults), not a mistake.
            if label == "no fields" && path == "/me/preferences" {
                continue;
            }
            let (status, answer) = stack
                .call_raw(method.clone(), &path, token, content_type, body)
                .await;
            assert!(
                status.is_client_error(),
                "{} {path} with {label}: {status} {answer}",
                route.method
            );
            // 401/403 may come from API Gateway's authorizer itself; every
            // answer our functions give carries the error body.
            if status != StatusCode::UNAUTHORIZED {
                let shaped = if path == "/payments/notify/wechatpay" {
                    is_wechat_pay_failure(&answer)
                } else {
                    is_error_body(&answer)
                };
                assert!(
                    shaped,
                    "{} {path} with {label}: {status} {answer}",
                    route.method
                );
            }
            answered += 1;
        }
    }
    println!(
        "{answered} bad requests over {} routes: all 4xx",
        routes.len()
    );
    // None of it reserved or changed stock.
    assert_eq!(stack.counters(&product).await, before);
}

/// Issues 27.6 and 27.8 through the stack: a body with no Content-Type is
/// 415 and creates nothing; valid JSON with a null or a number where a
/// string enum is expected names the field.
#[tokio::test]
async fn untyped_bodies_are_415_and_wrong_enum_values_name_the_field() {
    let stack = Stack::from_env();
    for path in ["/orders", "/payments"] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", stack.api_url))
            .bearer_auth(&stack.user_token)
            .body(r#"{"productId": "tea-longjing", "quantity": 1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path}"
        );
    }
    for (body, field) in [
        (json!({"locale": null}), "locale"),
        (json!({"locale": 5}), "locale"),
    ] {
        let (status, answer) = stack
            .call(
                Method::PUT,
                "/me/preferences",
                Some(&stack.user_token),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "INVALID_FIELD", "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
}
