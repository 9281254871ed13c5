//! HTTP client for the local stack that `scripts/test` deployed: real tokens,
//! the real API Gateway authorizer, the real Lambda binaries.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub struct Stack {
    pub api_url: String,
    pub user_token: String,
    pub other_token: String,
    pub admin_token: String,
    /// Users only the rebate tests use, one per test (each has a monthly
    /// cap and a balance of its own).
    pub rebate_tokens: Vec<String>,
    /// Users only the notification tests use, one per test.
    pub notify_tokens: Vec<String>,
    http: Client,
}

impl Stack {
    pub fn from_env() -> Self {
        Self {
            api_url: super::required_env("E2E_API_URL"),
            user_token: super::required_env("E2E_USER_TOKEN"),
            other_token: super::required_env("E2E_OTHER_TOKEN"),
            admin_token: super::required_env("E2E_ADMIN_TOKEN"),
            rebate_tokens: super::required_env("E2E_REBATE_TOKENS")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            notify_tokens: super::required_env("E2E_NOTIFY_TOKENS")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
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
        self.new_product_in("home", prefix, price, stock).await
    }

    /// [`Self::new_product`] in a given category.
    pub async fn new_product_in(
        &self,
        category: &str,
        prefix: &str,
        price: i64,
        stock: i64,
    ) -> String {
        let id = unique_id(prefix);
        let body = serde_json::json!({"name": "Kettle", "category": category, "price": price, "stock": stock});
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

    /// The user of `token` orders `quantity` of a product and starts a card
    /// payment for it.
    pub async fn order_with_payment<'a>(
        &'a self,
        product_id: &str,
        quantity: i64,
        token: &str,
    ) -> Flow<'a> {
        let body = json!({"productId": product_id, "quantity": quantity});
        let (status, order) = self
            .call(Method::POST, "/orders", Some(token), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order_id = order["orderId"].as_str().unwrap().to_owned();
        let (status, payment) = self
            .call(
                Method::POST,
                "/payments",
                Some(token),
                Some(json!({"orderId": order_id, "paymentMethod": "CARD"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        Flow {
            stack: self,
            token: token.to_owned(),
            product: product_id.to_owned(),
            order_id,
            payment,
        }
    }

    /// Polls `GET path` as `token` until `done` holds for the body.
    pub async fn wait_for(
        &self,
        path: &str,
        token: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.call(Method::GET, path, Some(token), None).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} not as expected after {within:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A product's (stock, reserved) as the API shows them to an admin.
    pub async fn counters(&self, product_id: &str) -> (i64, i64) {
        let (_, p) = self
            .call(
                Method::GET,
                &format!("/products/{product_id}"),
                Some(&self.admin_token),
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

/// The category the e2e rebate rules rate at 10% (nothing else earns).
pub const REBATE_CATEGORY: &str = "e2e-rebate";

impl Stack {
    /// Sets the e2e rebate rules: 10% in [`REBATE_CATEGORY`], nothing
    /// elsewhere, 2500 per user per month.
    pub async fn ensure_rebate_rules(&self) {
        let rules = json!({
            "currency": "CNY",
            "defaultRateBps": 0,
            "categoryRatesBps": {REBATE_CATEGORY: 1000},
            "maxPerUserPerMonth": 2500,
        });
        for _ in 0..10 {
            let (status, body) = self
                .call(
                    Method::PUT,
                    "/admin/rebate-rules",
                    Some(&self.admin_token),
                    Some(rules.clone()),
                )
                .await;
            match status {
                StatusCode::OK => return,
                // Another test replaced them at the same moment.
                StatusCode::CONFLICT => continue,
                _ => panic!("PUT /admin/rebate-rules: {status} {body}"),
            }
        }
        panic!("could not set the rebate rules");
    }

    /// The caller's inbox, newest 100 (`GET /me/notifications`).
    pub async fn inbox(&self, token: &str) -> Value {
        let (status, body) = self
            .call(
                Method::GET,
                "/me/notifications?limit=100",
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The caller's rebate statement (`GET /me/rebates`).
    pub async fn rebate_statement(&self, token: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, "/me/rebates?limit=100", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// A rebate statement's entries for one order.
pub fn entries_of<'a>(statement: &'a Value, order_id: &str) -> Vec<&'a Value> {
    statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["orderId"] == order_id)
        .collect()
}

/// The inbox messages about one order, by title.
pub fn titles_for(inbox: &Value, order_id: &str) -> std::collections::BTreeMap<String, usize> {
    let mut titles = std::collections::BTreeMap::new();
    for n in inbox["items"].as_array().unwrap() {
        if n["orderId"] == order_id {
            *titles
                .entry(n["title"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    titles
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

/// An order with a pending payment, and the customer who made it.
pub struct Flow<'a> {
    pub stack: &'a Stack,
    pub token: String,
    pub product: String,
    pub order_id: String,
    pub payment: Value,
}

impl Flow<'_> {
    /// The provider's signed callback with `result` (SUCCESS or FAILED).
    pub async fn notify(&self, result: &str) {
        let body = json!({
            "paymentId": self.payment["paymentId"], "orderId": self.order_id, "paymentStatus": result,
            "amount": self.payment["amount"], "currency": "CNY", "providerTransactionId": unique_id("tx"),
        });
        let secret = super::required_env("E2E_PAYMENT_SECRET");
        let signature = adapters::payments::sandbox::sign(
            secret.as_bytes(),
            domain::clock::now().unix_timestamp(),
            body.to_string().as_bytes(),
        );
        let response = reqwest::Client::new()
            .post(format!("{}/payments/notify", self.stack.api_url))
            .header("content-type", "application/json")
            .header("x-payment-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    pub async fn wait_for_order(&self, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, order) = self
                .stack
                .call(
                    Method::GET,
                    &format!("/orders/{}", self.order_id),
                    Some(&self.token),
                    None,
                )
                .await;
            if order["orderStatus"] == status {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "order still {} after {within:?}, expected {status}",
                order["orderStatus"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn wait_for_payment(&self, status: &str, within: Duration) {
        let path = format!("/payments/{}", self.payment["paymentId"].as_str().unwrap());
        let deadline = Instant::now() + within;
        loop {
            let (_, payment) = self
                .stack
                .call(Method::GET, &path, Some(&self.token), None)
                .await;
            if payment["paymentStatus"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "payment still {} after {within:?}, expected {status}",
                payment["paymentStatus"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn counters(&self) -> (i64, i64) {
        self.stack.counters(&self.product).await
    }

    /// The shop ships the paid order and its buyer confirms receipt: the
    /// order is `COMPLETED` when this returns (the receipt, or the
    /// auto-confirm sweep racing it on the test stack).
    pub async fn ship_and_receive(&self) {
        let (status, shipped) = self
            .stack
            .call(
                Method::POST,
                &format!("/orders/{}/shipments", self.order_id),
                Some(&self.stack.admin_token),
                Some(json!({"carrier": "SF", "trackingNumber": unique_id("SF")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{shipped}");
        let (status, received) = self
            .stack
            .call(
                Method::POST,
                &format!("/orders/{}/receipt", self.order_id),
                Some(&self.token),
                None,
            )
            .await;
        // A completed order's receipt answers 200 too.
        assert_eq!(status, StatusCode::OK, "{received}");
    }
}

/// The bodies of every message visible in a queue now (each is then
/// hidden for a minute, so none is read twice).
pub async fn drain_visible(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive from the queue");
        if out.messages().is_empty() {
            return bodies;
        }
        bodies.extend(
            out.messages()
                .iter()
                .map(|m| m.body().unwrap_or("").to_owned()),
        );
    }
}

/// The stack's outputs and an SDK config for its AWS endpoint.
pub async fn stack_aws() -> (Value, aws_config::SdkConfig) {
    let outputs: Value =
        serde_json::from_str(&std::fs::read_to_string(super::required_env("E2E_OUTPUTS")).unwrap())
            .unwrap();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(adapters::db::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(super::required_env("E2E_AWS_ENDPOINT"))
        .load()
        .await;
    (outputs["outputs"].clone(), config)
}

/// A fresh queue subscribed to `topic` (raw delivery), standing in for a
/// subscriber the test watches: the SQS client and the queue's URL.
pub async fn queue_subscribed_to(
    config: &aws_config::SdkConfig,
    topic: &str,
    prefix: &str,
) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue_name = unique_id(prefix).replace(['_'], "-");
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]});
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await
        .unwrap();
    aws_sdk_sns::Client::new(config)
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (sqs, queue_url)
}
