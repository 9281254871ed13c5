//! The provider simulators that `scripts/test` runs (scripts/simulators/),
//! seen from the end-to-end tests: the buyer's click on the pay page, the
//! notifications they are asked to send, and their ledgers, which are the
//! truth about money. Also the stack's own records a payment test reads.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::e2e::stack_aws;

pub struct Simulator {
    pub url: String,
}

impl Simulator {
    /// The simulator whose URL the environment variable `var` holds.
    pub fn from_env(var: &str) -> Self {
        Self {
            url: super::required_env(var),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Clicks *pay* on the trade's page; `notify: false` loses the
    /// provider's notification, as a network may.
    pub async fn pay(&self, trade: &str, notify: bool) {
        let response = reqwest::Client::new()
            .post(format!("{}/pay/{trade}", self.url))
            .header("accept", "application/json")
            .form(&[
                ("action", "pay"),
                ("notify", if notify { "yes" } else { "no" }),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
    }

    /// The provider tries to take money for the trade now: its status.
    pub async fn try_late_payment(&self, trade: &str) -> StatusCode {
        reqwest::Client::new()
            .post(format!("{}/pay/{trade}", self.url))
            .form(&[("action", "pay")])
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Sends the notification `variant` for the trade `times` times: our
    /// API's answers (`{status, body}` each).
    pub async fn notify(&self, trade: &str, variant: &str, times: usize) -> Vec<Value> {
        let (status, answers) = self
            .call(
                Method::POST,
                &format!("/_sim/notify/{trade}"),
                Some(json!({"variant": variant, "times": times})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        answers.as_array().unwrap().clone()
    }

    pub async fn ledger(&self, trade: &str) -> Value {
        let (status, trade) = self
            .call(Method::GET, &format!("/_sim/trades/{trade}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{trade}");
        trade
    }

    /// Calls whose body contains `matching` fail as in an outage until
    /// turned off.
    pub async fn outage(&self, on: bool, matching: &str) {
        self.call(
            Method::POST,
            "/_sim/outage",
            Some(json!({"on": on, "matching": matching})),
        )
        .await;
    }
}

/// What the payment's callback audit says: outcome → count.
pub async fn audit(payment_id: &str) -> BTreeMap<String, usize> {
    let (outputs, config) = stack_aws().await;
    let items = aws_sdk_dynamodb::Client::new(&config)
        .query()
        .table_name(outputs["PaymentCallbacksTableName"].as_str().unwrap())
        .key_condition_expression("paymentId = :p")
        .expression_attribute_values(":p", AttributeValue::S(payment_id.to_owned()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut outcomes = BTreeMap::new();
    for item in items {
        *outcomes
            .entry(item["outcome"].as_s().unwrap().clone())
            .or_default() += 1;
    }
    outcomes
}

/// Runs the reconciliation sweep now (the schedule runs it every minute
/// too); its report.
pub async fn reconcile() -> Value {
    let (outputs, config) = stack_aws().await;
    let out = aws_sdk_lambda::Client::new(&config)
        .invoke()
        .function_name(outputs["ReconcilePaymentsFunctionName"].as_str().unwrap())
        .payload(aws_smithy_types::Blob::new("{}"))
        .send()
        .await
        .unwrap();
    assert!(out.function_error().is_none(), "{out:?}");
    serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap()
}

/// One provider's payments through the stack, with its simulator: the
/// flows every provider goes through the same way (the tests of each
/// provider add what is its own: its URLs, its notification variants).
pub struct Trial<'a> {
    pub stack: &'a crate::e2e::Stack,
    pub sim: Simulator,
    /// The API's payment method the stack routes to this provider.
    pub method: &'static str,
    /// Whether one of our answers to a notification is the provider's
    /// acknowledgement (`success`, a 2xx…).
    pub acknowledged: fn(&Value) -> bool,
}

impl Trial<'_> {
    /// A fresh product, an order of one, and a payment by this method: the
    /// order's id and the payment.
    pub async fn payment(&self, prefix: &str, price: i64) -> (String, Value) {
        let product = self.stack.new_product(prefix, price, 10).await;
        let order = self.stack.new_order(&product, 1).await;
        let order_id = order["orderId"].as_str().unwrap().to_owned();
        let (status, payment) = self.pay_for(&order_id).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        (order_id, payment)
    }

    /// `POST /payments` for the order by this method.
    pub async fn pay_for(&self, order_id: &str) -> (StatusCode, Value) {
        self.stack
            .call(
                Method::POST,
                "/payments",
                Some(&self.stack.user_token),
                Some(json!({"orderId": order_id, "paymentMethod": self.method})),
            )
            .await
    }

    pub async fn payment_now(&self, payment_id: &str) -> Value {
        let (status, payment) = self
            .stack
            .call(
                Method::GET,
                &format!("/payments/{payment_id}"),
                Some(&self.stack.user_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{payment}");
        payment
    }

    pub async fn wait_for_order(&self, order_id: &str, status: &str, within_secs: u64) -> Value {
        self.stack
            .wait_for(
                &format!("/orders/{order_id}"),
                &self.stack.user_token,
                Duration::from_secs(within_secs),
                |o| o["orderStatus"] == status,
            )
            .await
    }

    /// Sends `variant` once and asserts our answer is acknowledged or not.
    pub async fn expect_notification(&self, payment_id: &str, variant: &str, acknowledged: bool) {
        for answer in self.sim.notify(payment_id, variant, 1).await {
            assert_eq!(
                (self.acknowledged)(&answer),
                acknowledged,
                "{variant}: {answer}"
            );
        }
    }

    /// The buyer has paid with the notification lost; now the provider
    /// sends ten genuine copies at once: every copy acknowledged, one
    /// transition.
    pub async fn ten_copies_pay_once(&self, order_id: &str, payment_id: &str) {
        let copies =
            futures::future::join_all((0..10).map(|_| self.sim.notify(payment_id, "genuine", 1)))
                .await;
        for answer in copies.into_iter().flatten() {
            assert!((self.acknowledged)(&answer), "{answer}");
        }
        let paid = self.wait_for_order(order_id, "PAID", 60).await;
        assert_eq!(paid["paidPaymentId"], payment_id, "{paid}");
        let outcomes = audit(payment_id).await;
        assert_eq!(outcomes.get("APPLIED"), Some(&1), "{outcomes:?}");
        // Nine duplicates, or ten if the scheduled reconciliation settled it
        // first (it asks about every pending payment a second after creation
        // on the test stack).
        let duplicates = outcomes.get("DUPLICATE").copied().unwrap_or(0);
        assert!((9..=10).contains(&duplicates), "{outcomes:?}");
    }

    /// The buyer cancels a paid order three times at once: refunded at the
    /// provider once, for the whole amount (the simulator's ledger).
    pub async fn cancelled_and_refunded_once(&self, order_id: &str, payment_id: &str, amount: i64) {
        let path = format!("/orders/{order_id}/cancel");
        let answers = futures::future::join_all((0..3).map(|_| {
            self.stack
                .call(Method::POST, &path, Some(&self.stack.user_token), None)
        }))
        .await;
        for (status, body) in answers {
            assert!(
                status.is_success() || status == StatusCode::CONFLICT,
                "{status} {body}"
            );
        }
        self.wait_for_order(order_id, "REFUNDED", 60).await;
        let trade = self.sim.ledger(payment_id).await;
        assert_eq!(trade["refunded"], amount, "{trade}");
        assert_eq!(trade["refunds"].as_object().unwrap().len(), 1, "{trade}");
        assert_eq!(
            self.payment_now(payment_id).await["paymentStatus"],
            "REFUNDED"
        );
        // Providers that settle refunds later report the result: applied
        // once (at most: Alipay's answer is the result, nothing follows).
        let refund = self.refund_settled(payment_id).await;
        assert_eq!(refund["refundStatus"], "SUCCEEDED", "{refund}");
        assert_eq!(refund["amount"], amount, "{refund}");
        let outcomes = audit(payment_id).await;
        assert!(
            outcomes.get("REFUND_APPLIED").copied().unwrap_or(0) <= 1,
            "{outcomes:?}"
        );
        // A late genuine copy after the refund changes nothing.
        self.expect_notification(payment_id, "genuine", true).await;
        assert_eq!(
            self.payment_now(payment_id).await["paymentStatus"],
            "REFUNDED"
        );
    }

    /// The payment's one refund once the provider has reported its result.
    pub async fn refund_settled(&self, payment_id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let payment = self.payment_now(payment_id).await;
            let refunds: Vec<&Value> = payment["refunds"]
                .as_object()
                .map(|r| r.values().collect())
                .unwrap_or_default();
            assert!(refunds.len() <= 1, "{payment}");
            if let Some(refund) = refunds.first().filter(|r| r["refundStatus"] != "PENDING") {
                return (*refund).clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "refund not settled: {payment}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The provider accepts a refund, then reports it could not pay it
    /// (`failing`: the simulator's refund outcome): the refund is recorded
    /// `FAILED` once, with the provider's reason, however often the result
    /// is resent; a forged result changes nothing.
    pub async fn failed_refund_recorded_once(&self, prefix: &str, price: i64, failing: &str) {
        let (order_id, payment) = self.payment(prefix, price).await;
        let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
        let (status, _) = self
            .sim
            .call(
                Method::POST,
                &format!("/_sim/refund-outcome/{payment_id}"),
                Some(json!({"status": failing})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        self.sim.pay(&payment_id, true).await;
        self.wait_for_order(&order_id, "PAID", 60).await;
        let (status, body) = self
            .stack
            .call(
                Method::POST,
                &format!("/orders/{order_id}/cancel"),
                Some(&self.stack.user_token),
                None,
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        self.wait_for_order(&order_id, "REFUNDED", 60).await;
        let refund = self.refund_settled(&payment_id).await;
        assert_eq!(refund["refundStatus"], "FAILED", "{refund}");
        assert!(
            refund["failureReason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{refund}"
        );
        // Forged: refused. Resent five times at once: acknowledged, no news.
        for answer in self.sim.notify(&payment_id, "refund-forged", 1).await {
            assert_eq!(answer["status"], 401, "{answer}");
        }
        let copies =
            futures::future::join_all((0..5).map(|_| self.sim.notify(&payment_id, "refund", 1)))
                .await;
        for answer in copies.into_iter().flatten() {
            assert!((self.acknowledged)(&answer), "{answer}");
        }
        let outcomes = audit(&payment_id).await;
        assert_eq!(outcomes.get("REFUND_APPLIED"), Some(&1), "{outcomes:?}");
        assert!(
            outcomes.get("REFUND_DUPLICATE").copied().unwrap_or(0) >= 5,
            "{outcomes:?}"
        );
        assert_eq!(self.refund_settled(&payment_id).await, refund);
    }

    /// Paid with every notification lost: the reconciliation sweep settles
    /// it, once, and the notification arriving after all changes nothing.
    pub async fn lost_notification_settled_by_reconciliation(&self, prefix: &str, price: i64) {
        let (order_id, payment) = self.payment(prefix, price).await;
        let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
        self.sim.pay(&payment_id, false).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let report = reconcile().await;
            let now = self.payment_now(&payment_id).await;
            if now["paymentStatus"] == "SUCCEEDED" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not settled: {now} {report}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.wait_for_order(&order_id, "PAID", 60).await;
        // Nothing was delivered: the sweep, not a notification, settled it.
        assert_eq!(self.sim.ledger(&payment_id).await["deliveries"], json!([]));
        reconcile().await;
        for answer in self.sim.notify(&payment_id, "genuine", 2).await {
            assert!((self.acknowledged)(&answer), "{answer}");
        }
        let outcomes = audit(&payment_id).await;
        assert_eq!(outcomes.get("APPLIED"), Some(&1), "{outcomes:?}");
    }

    /// An unpaid order expires: the sweep closes its trade at the provider
    /// (`closed` reads the ledger), and the buyer can no longer pay it.
    pub async fn expired_trade_closed(&self, prefix: &str, price: i64, closed: fn(&Value) -> bool) {
        let (order_id, payment) = self.payment(prefix, price).await;
        let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
        self.wait_for_order(&order_id, "EXPIRED", 120).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let trade = self.sim.ledger(&payment_id).await;
            if closed(&trade) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not closed: {trade}");
            reconcile().await;
        }
        assert_eq!(
            self.sim.try_late_payment(&payment_id).await,
            StatusCode::CONFLICT,
            "a late payment went through"
        );
    }

    /// The provider's resends stop at our first acknowledgement.
    pub async fn resends_stop_at_the_first_acknowledgement(&self, prefix: &str, price: i64) {
        let (order_id, payment) = self.payment(prefix, price).await;
        let payment_id = payment["paymentId"].as_str().unwrap().to_owned();
        self.sim.pay(&payment_id, true).await;
        self.wait_for_order(&order_id, "PAID", 60).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let trade = self.sim.ledger(&payment_id).await;
            if trade["notify"] == "acknowledged" {
                let last = trade["deliveries"].as_array().unwrap().last().cloned();
                assert!((self.acknowledged)(&last.unwrap()), "{trade}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{trade}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The provider is down while a payment starts: 503 with Retry-After,
    /// no half-created payment; back up, the same request starts it.
    pub async fn outage_is_503_and_leaves_no_payment(&self, prefix: &str) {
        let product = self.stack.new_product(prefix, 700, 10).await;
        let order_id = self.stack.new_order(&product, 1).await["orderId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.sim.outage(true, &order_id).await;
        let response = reqwest::Client::new()
            .post(format!("{}/payments", self.stack.api_url))
            .bearer_auth(&self.stack.user_token)
            .json(&json!({"orderId": order_id, "paymentMethod": self.method}))
            .send()
            .await
            .unwrap();
        self.sim.outage(false, &order_id).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let (_, order) = self
            .stack
            .call(
                Method::GET,
                &format!("/orders/{order_id}"),
                Some(&self.stack.user_token),
                None,
            )
            .await;
        assert!(
            order.get("activePaymentId").is_none(),
            "half-created payment: {order}"
        );
        let (status, payment) = self.pay_for(&order_id).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
    }
}
