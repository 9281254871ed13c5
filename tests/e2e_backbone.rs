//! The event backbone through the deployed local stack: outbox stream →
//! publisher (failing every 3rd publish on the test stack) → SNS topic →
//! filtered SQS queue → order-status consumer, and its DLQ.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Flow, Stack, unique_id};

async fn order_with_payment(stack: &Stack) -> Flow<'_> {
    let product = stack.new_product("e2e-bb", 2500, 6).await;
    stack
        .order_with_payment(&product, 2, &stack.user_token)
        .await
}

#[tokio::test]
async fn a_paid_order_becomes_paid_and_its_units_sold() {
    let stack = Stack::from_env();
    let flow = order_with_payment(&stack).await;
    assert_eq!(flow.counters().await, (4, 2));
    flow.notify("SUCCESS").await;
    flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    assert_eq!(flow.counters().await, (4, 0), "reserved units are now sold");

    // Cancelling a paid order refunds it; its units return to stock.
    let (status, body) = stack
        .call(
            Method::POST,
            &format!("/orders/{}/cancel", flow.order_id),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    flow.wait_for_order("REFUNDED", Duration::from_secs(30))
        .await;
    flow.wait_for_payment("REFUNDED", Duration::from_secs(5))
        .await;
    assert_eq!(flow.counters().await, (6, 0));
}

/// Issue 27.1 through the stack: the provider's success after its failure
/// pays the order (it used to be answered as a duplicate and lost).
#[tokio::test]
async fn a_success_after_a_failure_pays_the_order() {
    let stack = Stack::from_env();
    let flow = order_with_payment(&stack).await;
    flow.notify("FAILED").await;
    flow.wait_for_order("PAYMENT_FAILED", Duration::from_secs(30))
        .await;
    flow.notify("SUCCESS").await;
    flow.wait_for_payment("SUCCEEDED", Duration::from_secs(10))
        .await;
    flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    assert_eq!(flow.counters().await, (4, 0), "reserved units are now sold");
}

#[tokio::test]
async fn a_failed_payment_keeps_the_reservation_for_a_retry() {
    let stack = Stack::from_env();
    let flow = order_with_payment(&stack).await;
    flow.notify("FAILED").await;
    flow.wait_for_order("PAYMENT_FAILED", Duration::from_secs(30))
        .await;
    assert_eq!(flow.counters().await, (4, 2));
    // The customer may try again.
    let (status, retry) = stack
        .call(
            Method::POST,
            "/payments",
            Some(&stack.user_token),
            Some(json!({"orderId": flow.order_id, "paymentMethod": "CARD"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{retry}");
}

#[tokio::test]
async fn a_success_after_expiry_is_refunded_automatically() {
    let stack = Stack::from_env();
    let flow = order_with_payment(&stack).await;
    // The test stack's payment window is 20 s; the sweeper runs every minute.
    flow.wait_for_order("EXPIRED", Duration::from_secs(150))
        .await;
    flow.notify("SUCCESS").await;
    flow.wait_for_payment("REFUNDED", Duration::from_secs(30))
        .await;
    let (_, order) = stack
        .call(
            Method::GET,
            &format!("/orders/{}", flow.order_id),
            Some(&stack.user_token),
            None,
        )
        .await;
    assert_eq!(order["orderStatus"], "EXPIRED");
    assert_eq!(flow.counters().await, (6, 0));
}

/// The stack's outputs and an SDK configuration for its emulator.
#[tokio::test]
async fn the_same_event_delivered_ten_times_acts_once() {
    let stack = Stack::from_env();
    let flow = order_with_payment(&stack).await;
    let (outputs, config) = system_tests::e2e::stack_aws().await;
    let mut payment: domain::payments::Payment =
        serde_json::from_value(flow.payment.clone()).unwrap();
    payment.payment_status = domain::payments::PaymentStatus::Succeeded;
    let envelope = domain::events::Envelope::new(
        domain::events::EventType::PaymentSucceeded,
        "redelivery-test",
        &domain::clock::now_rfc3339(),
        &payment,
    )
    .unwrap();
    let body = serde_json::to_string(&envelope).unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = outputs["OrderStatusQueueUrl"].as_str().unwrap();
    for _ in 0..10 {
        sqs.send_message()
            .queue_url(queue)
            .message_body(&body)
            .send()
            .await
            .unwrap();
    }
    flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    // Let the other copies be consumed too.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(flow.counters().await, (4, 0), "units sold exactly once");
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let events = dynamodb
        .scan()
        .table_name(outputs["EventsTableName"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let paid_events = events
        .items()
        .iter()
        .filter_map(|i| serde_json::from_str::<Value>(i["envelope"].as_s().unwrap()).ok())
        .filter(|e| e["type"] == "OrderPaid" && e["data"]["orderId"] == flow.order_id.as_str())
        .count();
    assert_eq!(paid_events, 1, "one OrderPaid event for ten deliveries");
}

#[tokio::test]
async fn a_poison_message_lands_alone_in_each_dead_letter_queue() {
    let (outputs, config) = system_tests::e2e::stack_aws().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    // Every consumer queue the stack outputs, with its DLQ.
    let pairs: Vec<(String, String)> = outputs
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, url)| {
            let consumer = name.strip_suffix("QueueUrl")?;
            let dlq = outputs[format!("{consumer}DeadLetterQueueUrl")].as_str()?;
            Some((url.as_str()?.to_owned(), dlq.to_owned()))
        })
        .collect();
    assert!(
        pairs.len() >= 2,
        "consumer queues in the outputs: {pairs:?}"
    );
    let checks = pairs
        .iter()
        .map(|(queue, dlq)| poison_reaches_dlq(&sqs, queue, dlq));
    for (pair, result) in pairs.iter().zip(futures::future::join_all(checks).await) {
        assert!(result.is_ok(), "{pair:?}: {}", result.unwrap_err());
    }
}

async fn poison_reaches_dlq(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    dlq: &str,
) -> Result<(), String> {
    let marker = unique_id("poison");
    sqs.send_message()
        .queue_url(queue)
        .message_body(format!("{{not an event {marker}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;

    // maxReceiveCount 5 × visibility 12 s on the test stack.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .wait_time_seconds(5)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for m in out.messages() {
            if m.body().unwrap_or("").starts_with("{\"eventId\"") {
                return Err(format!("a valid event reached the DLQ: {:?}", m.body()));
            }
        }
        if out
            .messages()
            .iter()
            .any(|m| m.body().unwrap_or("").contains(&marker))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the poison message did not reach the DLQ".into());
        }
    }
}

/// Issue 26.5: an event the outbox stream gave up on (on AWS, after its
/// bounded retries) stays in the events table, and the documented command
/// publishes it again to the topic, verbatim and with its type.
#[tokio::test]
async fn the_republish_command_publishes_a_stored_event_again() {
    let stack = Stack::from_env();
    let (outputs, config) = system_tests::e2e::stack_aws().await;
    let topic = outputs["DomainEventsTopicArn"].as_str().unwrap();
    let (sqs, queue_url) =
        system_tests::e2e::queue_subscribed_to(&config, topic, "e2e-republish").await;
    let product = stack.new_product("e2e-republish", 300, 5).await;
    let order = stack.new_order(&product, 1).await;
    let order_id = order["orderId"].as_str().unwrap();
    // The order's OrderCreated, as the events table keeps it.
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let items = dynamodb
        .scan()
        .table_name(outputs["EventsTableName"].as_str().unwrap())
        .filter_expression("contains(envelope, :order) AND #type = :created")
        .expression_attribute_names("#type", "type")
        .expression_attribute_values(
            ":order",
            aws_sdk_dynamodb::types::AttributeValue::S(order_id.to_owned()),
        )
        .expression_attribute_values(
            ":created",
            aws_sdk_dynamodb::types::AttributeValue::S("OrderCreated".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    let event_id = items[0]["eventId"].as_s().unwrap().clone();
    // Whatever the first publication brought has arrived and is set aside.
    tokio::time::sleep(Duration::from_secs(5)).await;
    system_tests::e2e::drain_visible(&sqs, &queue_url).await;

    let outputs_file: Value = serde_json::from_str(
        &std::fs::read_to_string(system_tests::required_env("E2E_OUTPUTS")).unwrap(),
    )
    .unwrap();
    let root = system_tests::repo_root();
    let run = std::process::Command::new(root.join(".local/venv/bin/python"))
        .arg(root.join("scripts/republish-event"))
        .args(["--stack-name", outputs_file["stackName"].as_str().unwrap()])
        .args([
            "--event-id",
            &event_id,
            "--event-id",
            "01NOSUCHEVENT0000000000000",
        ])
        .args([
            "--endpoint-url",
            &system_tests::required_env("E2E_AWS_ENDPOINT"),
        ])
        .args(["--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    // One found and published, one named as missing: exit status 1.
    assert_eq!(run.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("{event_id}: OrderCreated published again")),
        "{said}"
    );
    assert!(
        said.contains("01NOSUCHEVENT0000000000000: not in"),
        "{said}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bodies = system_tests::e2e::drain_visible(&sqs, &queue_url).await;
        if let Some(body) = bodies.iter().find(|b| b.contains(&event_id)) {
            let envelope: Value = serde_json::from_str(body).unwrap();
            assert_eq!(envelope["eventId"], event_id.as_str());
            assert_eq!(envelope["type"], "OrderCreated");
            assert_eq!(envelope["data"]["orderId"], order_id);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the republished event did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
