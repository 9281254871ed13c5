//! The provider simulators that `scripts/test` runs (scripts/simulators/),
//! seen from the end-to-end tests: the buyer's click on the pay page, the
//! notifications they are asked to send, and their ledgers, which are the
//! truth about money. Also the stack's own records a payment test reads.

use std::collections::BTreeMap;

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
