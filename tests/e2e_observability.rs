//! What an operator reads, through the deployed local stack: every function
//! logs JSON lines carrying the Lambda request id, API Gateway's request id,
//! the operation and the correlation id, which follows the request into the
//! consumers of its events with its X-Ray trace id; each invocation's counters arrive as valid EMF
//! documents; no token reaches a log.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client as Logs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use system_tests::e2e::{Stack, stack_aws, unique_id};

/// The log group of the function whose logical id contains `function`.
async fn log_group(logs: &Logs, function: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups = logs
            .describe_log_groups()
            .log_group_name_prefix("/aws/lambda/")
            .send()
            .await
            .expect("CloudWatch Logs answers");
        if let Some(name) = groups
            .log_groups()
            .iter()
            .filter_map(|g| g.log_group_name())
            .find(|name| name.contains(function))
        {
            return name.to_owned();
        }
        assert!(Instant::now() < deadline, "no log group for {function}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every message of a log group, oldest first.
async fn messages(logs: &Logs, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(group)
            .set_next_token(token)
            .send()
            .await
            .expect("CloudWatch Logs answers");
        out.extend(
            page.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// The JSON lines of a group (Lambda's own START/END/REPORT lines are text).
fn json_lines(messages: &[String]) -> Vec<Value> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

/// The span called `name` in a log line, if the line was written inside it.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

/// Waits until `find` picks something out of the group's JSON lines.
async fn wait_for_line<T>(
    logs: &Logs,
    group: &str,
    what: &str,
    find: impl Fn(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let lines = json_lines(&messages(logs, group).await);
        if let Some(found) = find(&lines) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never appeared in {group}; its JSON lines: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn an_orders_logs_carry_its_ids_from_the_api_into_the_consumers_and_its_metrics_are_emf() {
    let stack = Stack::from_env();
    let (_, config) = stack_aws().await;
    let logs = Logs::new(&config);
    let product = stack.new_product("observed", 1200, 5).await;
    let correlation_id = unique_id("corr");

    let response = reqwest::Client::new()
        .post(format!("{}/orders", stack.api_url))
        .bearer_auth(&stack.user_token)
        .header("X-Correlation-Id", &correlation_id)
        .json(&json!({"productId": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // The API function: its line for this request names all four ids.
    let group = log_group(&logs, "CreateOrderFunction").await;
    let answered = wait_for_line(&logs, &group, "the request's log line", |lines| {
        lines
            .iter()
            .find(|l| span(l, "request").is_some_and(|s| s["correlationId"] == correlation_id))
            .cloned()
    })
    .await;
    let request = span(&answered, "request").unwrap();
    assert_eq!(request["operation"], "POST /orders", "{answered}");
    assert!(
        request["apiRequestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{answered}"
    );
    let invocation = span(&answered, "Lambda runtime invoke").expect("the runtime's span");
    let request_id = invocation["requestId"].as_str().unwrap().to_owned();
    assert!(!request_id.is_empty());
    let trace_id = invocation["xrayTraceId"]
        .as_str()
        .expect("active tracing")
        .to_owned();
    assert_eq!(answered["level"], "INFO");

    // Its metrics: one valid EMF document for the invocation, tagged with it.
    let emf = wait_for_line(&logs, &group, "the invocation's EMF document", |lines| {
        lines
            .iter()
            .find(|l| l.get("_aws").is_some() && l["requestId"] == request_id.as_str())
            .cloned()
    })
    .await;
    adapters::metrics::check_emf(&emf).unwrap_or_else(|e| panic!("{e}: {emf}"));
    assert_eq!(emf["OrdersCreated"], 1, "{emf}");
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Shop");
    assert_eq!(emf["service"], "shop");
    assert!(group.ends_with(emf["function"].as_str().unwrap()), "{emf}");

    // Every execution environment reported its cold start once.
    let all = json_lines(&messages(&logs, &group).await);
    assert!(
        all.iter()
            .any(|l| l.get("_aws").is_some() && l["ColdStart"] == 1),
        "no ColdStart metric in {group}"
    );
    // Nothing a caller sent as a credential is logged.
    for message in messages(&logs, &group).await {
        assert!(
            !message.contains(&stack.user_token),
            "a token was logged: {message}"
        );
        assert!(
            !message.to_ascii_lowercase().contains("bearer "),
            "{message}"
        );
    }

    // The consumer of its OrderCreated event logs under the same correlation id.
    let notifier = log_group(&logs, "NotifierFunction").await;
    let handled = wait_for_line(
        &logs,
        &notifier,
        "the notifier's line for the order",
        |lines| {
            lines
                .iter()
                .find(|l| span(l, "event").is_some_and(|s| s["correlationId"] == correlation_id))
                .cloned()
        },
    )
    .await;
    let event = span(&handled, "event").unwrap();
    assert_eq!(event["eventType"], "OrderCreated", "{handled}");
    // ...and names the trace of the request that wrote the event.
    assert_eq!(event["traceId"], trace_id.as_str(), "{handled}");
    assert!(
        span(&handled, "Lambda runtime invoke").is_some(),
        "{handled}"
    );
}

#[tokio::test]
async fn a_forged_callback_is_counted_as_an_invalid_signature() {
    let stack = Stack::from_env();
    let (_, config) = stack_aws().await;
    let logs = Logs::new(&config);
    let correlation_id = unique_id("forged");
    let body = json!({"paymentId": "pay-x", "orderId": "ord-x", "paymentStatus": "SUCCESS",
                      "amount": 1, "currency": "CNY", "providerTransactionId": "tx"});
    let response = reqwest::Client::new()
        .post(format!("{}/payments/notify", stack.api_url))
        .header("X-Correlation-Id", &correlation_id)
        .header("X-Payment-Signature", "t=1,v1=00")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let group = log_group(&logs, "PaymentResultNotifyFunction").await;
    let request_id = wait_for_line(&logs, &group, "the rejection's log line", |lines| {
        lines
            .iter()
            .find(|l| {
                span(l, "request").is_some_and(|s| s["correlationId"] == correlation_id)
                    && l["level"] == "WARN"
            })
            .and_then(|l| span(l, "Lambda runtime invoke"))
            .map(|s| s["requestId"].as_str().unwrap().to_owned())
    })
    .await;
    let emf = wait_for_line(&logs, &group, "the rejection's EMF document", |lines| {
        lines
            .iter()
            .find(|l| l.get("_aws").is_some() && l["requestId"] == request_id.as_str())
            .cloned()
    })
    .await;
    adapters::metrics::check_emf(&emf).unwrap_or_else(|e| panic!("{e}: {emf}"));
    assert_eq!(emf["InvalidSignatures"], 1, "{emf}");
}

/// Issue 20.8: what a developer runs instead of `sam local invoke` (which
/// needs Docker): `scripts/local invoke NAME` (here the same command on the
/// test stack) invokes one deployed function of each kind with its sample
/// event through `sam remote invoke`, and prints its answer and its logs.
#[test]
fn one_function_of_each_kind_is_invoked_through_sam_remote_invoke() {
    let outputs = std::path::PathBuf::from(system_tests::required_env("E2E_OUTPUTS"));
    let root = system_tests::repo_root();
    for (function, answer) in [
        ("get-product-info", "\"statusCode\": 404"),
        ("update-order-status", "\"batchItemFailures\""),
        ("expire-orders", "\"leftForNextRun\""),
    ] {
        let out = std::process::Command::new(root.join(".local/venv/bin/python"))
            .arg(root.join("scripts/stack.py"))
            .arg("--dir")
            .arg(outputs.parent().unwrap())
            .args(["invoke", function])
            .output()
            .expect("the project's Python runs scripts/stack.py");
        let (answered, logged) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{function}: {answered} {logged}");
        assert!(answered.contains(answer), "{function}: {answered}");
        // Its log lines come with the answer (JSON, with the request id).
        assert!(logged.contains("\"requestId\""), "{function}: {logged}");
    }
}
