//! Payments through the deployed local stack: initiation with a real token,
//! the provider callback through API Gateway with no JWT, authenticated by
//! its signature with the secret the stack keeps in SSM.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Stack, unique_id};

async fn payable_order(stack: &Stack) -> String {
    let id = stack.new_product("e2e-pay", 1500, 5).await;
    stack.new_order(&id, 2).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn notify(stack: &Stack, body: &Value, signature: Option<String>) -> (StatusCode, Value) {
    let raw = body.to_string();
    let mut request = reqwest::Client::new()
        .post(format!("{}/payments/notify", stack.api_url))
        .header("content-type", "application/json")
        .body(raw);
    if let Some(sig) = signature {
        request = request.header("x-payment-signature", sig);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sign(body: &Value, age: i64) -> String {
    let secret = system_tests::required_env("E2E_PAYMENT_SECRET");
    let now = domain::clock::now().unix_timestamp();
    adapters::payments::sandbox::sign(secret.as_bytes(), now - age, body.to_string().as_bytes())
}

#[tokio::test]
async fn pay_an_order_through_the_provider_callback() {
    let stack = Stack::from_env();
    let order_id = payable_order(&stack).await;

    let (status, _) = stack
        .call(
            Method::POST,
            "/payments",
            None,
            Some(json!({"orderId": order_id, "paymentMethod": "CARD"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.other_token),
            Some(json!({"orderId": order_id, "paymentMethod": "CARD"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's order: {body}"
    );

    let (status, payment) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": order_id, "paymentMethod": "CARD"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["amount"], 3000);
    // Cards pay on a page, not by a code (the sandbox takes CARD on the
    // test stack; the wallets go to their simulators).
    assert_eq!(payment["provider"], "sandbox");
    assert!(payment["paymentUrl"].is_string());
    let payment_path = format!("/payments/{}", payment["paymentId"].as_str().unwrap());

    let callback = json!({
        "paymentId": payment["paymentId"], "orderId": order_id, "paymentStatus": "SUCCESS",
        "amount": 3000, "currency": "CNY", "providerTransactionId": unique_id("tx"),
    });
    // Forged, stale and unsigned callbacks are refused and change nothing.
    let (status, _) = notify(&stack, &callback, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = notify(&stack, &callback, Some(sign(&callback, 400))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_SIGNATURE"))
    );
    let mut tampered = callback.clone();
    tampered["amount"] = json!(1);
    let (status, _) = notify(&stack, &tampered, Some(sign(&callback, 0))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, still) = stack
        .call(Method::GET, &payment_path, Some(&stack.user_token), None)
        .await;
    assert_eq!(still["paymentStatus"], "PENDING");

    let (status, body) = notify(&stack, &callback, Some(sign(&callback, 0))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false);
    let (status, body) = notify(&stack, &callback, Some(sign(&callback, 0))).await;
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let (status, settled) = stack
        .call(Method::GET, &payment_path, Some(&stack.user_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled["paymentStatus"], "SUCCEEDED");
    let (status, _) = stack
        .call(Method::GET, &payment_path, Some(&stack.other_token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Issue 27.3 through the stack: the same Idempotency-Key and body after
/// the order was paid give the original 201, not 409 ORDER_NOT_PAYABLE.
#[tokio::test]
async fn an_idempotent_payment_retry_replays_after_the_order_was_paid() {
    let stack = Stack::from_env();
    let product = stack.new_product("e2e-pay-replay", 900, 5).await;
    let order = stack.new_order(&product, 1).await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let key = unique_id("pay-key");
    let start = || async {
        let response = reqwest::Client::new()
            .post(format!("{}/payments", stack.api_url))
            .bearer_auth(&stack.user_token)
            .header("Idempotency-Key", &key)
            .json(&json!({"orderId": order_id, "paymentMethod": "CARD"}))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let (status, payment) = start().await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    let callback = json!({
        "paymentId": payment["paymentId"], "orderId": order_id, "paymentStatus": "SUCCESS",
        "amount": payment["amount"], "currency": payment["currency"],
        "providerTransactionId": unique_id("tx"),
    });
    let (status, _) = notify(&stack, &callback, Some(sign(&callback, 0))).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/orders/{order_id}");
    stack
        .wait_for(
            &path,
            &stack.user_token,
            std::time::Duration::from_secs(30),
            |o| o["orderStatus"] == "PAID",
        )
        .await;
    let (status, replayed) = start().await;
    assert_eq!((status, &replayed), (StatusCode::CREATED, &payment));
}
