//! The catalog through the deployed local stack: HTTP with real Cognito
//! tokens → API Gateway JWT authorizer → Lambda `bootstrap` → DynamoDB.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Stack, unique_id};

fn tea(stock: i64) -> Value {
    json!({"name": "Longjing tea", "category": "food", "price": 16800, "stock": stock})
}

fn tamper_signature(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 20;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn every_catalog_route_needs_a_valid_token() {
    let stack = Stack::from_env();
    let routes = [
        (Method::GET, "/products".to_owned(), None),
        (Method::GET, "/products/anything".to_owned(), None),
        (Method::PUT, "/products/anything".to_owned(), Some(tea(1))),
        (
            Method::POST,
            "/products/anything/stock".to_owned(),
            Some(json!({"newStock": 1})),
        ),
    ];
    for (method, path, body) in routes {
        let (status, _) = stack.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        let (status, _) = stack
            .call(method.clone(), &path, Some("not.a.jwt"), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with garbage"
        );
        // A real token with its signature altered. (Not the last character:
        // in base64url it can carry only padding bits and decode the same.)
        let forged = tamper_signature(&stack.admin_token);
        let (status, _) = stack.call(method.clone(), &path, Some(&forged), body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a forged signature"
        );
    }
}

#[tokio::test]
async fn admin_manages_the_catalog_and_shoppers_read_it() {
    let stack = Stack::from_env();
    let id = unique_id("e2e-tea");
    let path = format!("/products/{id}");

    let (status, created) = stack
        .call(Method::PUT, &path, Some(&stack.admin_token), Some(tea(10)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["productId"], id.as_str());

    let (status, read) = stack
        .call(Method::GET, &path, Some(&stack.admin_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
    // A shopper sees whether it can be ordered, not the counters (29.6).
    let (status, shown) = stack
        .call(Method::GET, &path, Some(&stack.user_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["availability"], "LOW_STOCK", "{shown}");
    assert!(
        shown.get("stock").is_none() && shown.get("reserved").is_none(),
        "{shown}"
    );
    assert_eq!(shown["price"], created["price"]);

    let (status, updated) = stack
        .call(
            Method::POST,
            &format!("{path}/stock"),
            Some(&stack.admin_token),
            Some(json!({"newStock": 42})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["stock"], 42);
    assert_eq!(updated["reserved"], 0);
    assert_eq!(updated["version"], 2);

    let (status, listed) = stack
        .call(
            Method::GET,
            "/products?limit=100",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed["items"].is_array(), "{listed}");
}

#[tokio::test]
async fn shoppers_cannot_write_the_catalog() {
    let stack = Stack::from_env();
    let id = unique_id("e2e-forbidden");
    let path = format!("/products/{id}");
    let (status, body) = stack
        .call(Method::PUT, &path, Some(&stack.user_token), Some(tea(1)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let (status, _) = stack
        .call(
            Method::POST,
            &format!("{path}/stock"),
            Some(&stack.other_token),
            Some(json!({"newStock": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = stack
        .call(Method::GET, &path, Some(&stack.user_token), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the refused write created nothing"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let stack = Stack::from_env();
    let id = unique_id("e2e-bad");
    let path = format!("/products/{id}");
    stack
        .call(Method::PUT, &path, Some(&stack.admin_token), Some(tea(5)))
        .await;

    let (status, body) = stack
        .call(
            Method::GET,
            "/products/does-not-exist-anywhere",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "PRODUCT_NOT_FOUND");

    let stock = format!("{path}/stock");
    let (status, body) = stack
        .call(
            Method::POST,
            &stock,
            Some(&stack.admin_token),
            Some(json!({"newStock": -3})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "newStock");

    let (status, body) = stack
        .call_raw(
            Method::POST,
            &stock,
            &stack.admin_token,
            "application/json",
            b"{\"newStock\":".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "MALFORMED_JSON");

    let big = format!(
        "{{\"newStock\": 1, \"pad\": \"{}\"}}",
        "x".repeat(100 * 1024)
    )
    .into_bytes();
    let (status, body) = stack
        .call_raw(
            Method::POST,
            &stock,
            &stack.admin_token,
            "application/json",
            big,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");

    let (status, _) = stack
        .call_raw(
            Method::POST,
            &stock,
            &stack.admin_token,
            "text/plain",
            b"{\"newStock\":1}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, body) = stack
        .call(
            Method::GET,
            "/products?limit=0",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "limit");

    let (_, after) = stack
        .call(Method::GET, &path, Some(&stack.admin_token), None)
        .await;
    assert_eq!(
        (after["stock"].as_i64(), after["version"].as_i64()),
        (Some(5), Some(1)),
        "rejected calls changed nothing"
    );
}

#[tokio::test]
async fn listing_pages_with_next_token() {
    let stack = Stack::from_env();
    for i in 0..5 {
        let id = unique_id(&format!("e2e-page{i}"));
        stack
            .call(
                Method::PUT,
                &format!("/products/{id}"),
                Some(&stack.admin_token),
                Some(tea(1)),
            )
            .await;
    }
    let (status, first) = stack
        .call(
            Method::GET,
            "/products?limit=2",
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let token = first["nextToken"].as_str().expect("more pages");
    let (status, second) = stack
        .call(
            Method::GET,
            &format!("/products?limit=2&nextToken={token}"),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(first["items"][0], second["items"][0]);
}

#[tokio::test]
async fn product_reads_revalidate_with_etags_through_the_api() {
    let stack = Stack::from_env();
    let id = unique_id("e2e-etag");
    stack
        .call(
            Method::PUT,
            &format!("/products/{id}"),
            Some(&stack.admin_token),
            Some(tea(3)),
        )
        .await;
    let url = format!("{}/products/{id}", stack.api_url);
    let client = reqwest::Client::new();
    let first = client
        .get(&url)
        .bearer_auth(&stack.user_token)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = client
        .get(&url)
        .bearer_auth(&stack.user_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
}
