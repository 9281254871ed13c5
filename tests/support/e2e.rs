//! HTTP client for the local stack that `scripts/test` deployed: real tokens,
//! the real API Gateway authorizer, the real Lambda binaries.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

pub struct Stack {
    pub api_url: String,
    pub user_token: String,
    pub other_token: String,
    pub admin_token: String,
    http: Client,
}

impl Stack {
    pub fn from_env() -> Self {
        Self {
            api_url: super::required_env("E2E_API_URL"),
            user_token: super::required_env("E2E_USER_TOKEN"),
            other_token: super::required_env("E2E_OTHER_TOKEN"),
            admin_token: super::required_env("E2E_ADMIN_TOKEN"),
            http: Client::new(),
        }
    }

    /// Sends a request; `token` None sends no Authorization header.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.api_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the local stack answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// An admin creates a product under a fresh id (`prefix-…`); its id.
    pub async fn new_product(&self, prefix: &str, price: i64, stock: i64) -> String {
        let id = unique_id(prefix);
        let body = serde_json::json!({"name": "Kettle", "category": "home", "price": price, "stock": stock});
        let (status, answer) = self
            .call(
                Method::PUT,
                &format!("/products/{id}"),
                Some(&self.admin_token),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        id
    }

    /// The first user orders `quantity` of a product; the order.
    pub async fn new_order(&self, product_id: &str, quantity: i64) -> Value {
        let body = serde_json::json!({"productId": product_id, "quantity": quantity});
        let (status, order) = self
            .call(Method::POST, "/orders", Some(&self.user_token), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }

    /// A product's (stock, reserved) as the API shows them.
    pub async fn counters(&self, product_id: &str) -> (i64, i64) {
        let (_, p) = self
            .call(
                Method::GET,
                &format!("/products/{product_id}"),
                Some(&self.user_token),
                None,
            )
            .await;
        (
            p["stock"].as_i64().unwrap(),
            p["reserved"].as_i64().unwrap(),
        )
    }

    /// Sends raw bytes with an explicit content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the local stack answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// An id no other test, in this run or an earlier one, uses: parallel
/// tests can read the same clock tick, so a counter tells them apart.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}-{}-{n}", std::process::id())
}
