//! The order-status consumer in-process against DynamoDB Local: payment
//! events move orders and stock exactly once, however often they arrive,
//! and one bad message fails only itself.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;

use adapters::orders::Orders;
use adapters::payments::Payments;
use adapters::payments::sandbox::SandboxProvider;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::events::{Envelope, EventType};
use domain::orders::{OrderStatus, OrderTransition};
use domain::payments::{Payment, PaymentStatus};
use serde_json::json;
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};
use update_order_status::OrderStatusConsumer;

struct Fixture {
    db: TestDb,
    consumer: OrderStatusConsumer<SandboxProvider>,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    db.add_product("tea", 500, 10).await;
    let consumer = OrderStatusConsumer {
        orders: Orders::new(db.client.clone(), db.tables.clone()),
        payments: Payments::new(db.client.clone(), db.tables.clone()),
        provider: SandboxProvider::new("s", "https://sandbox.test"),
        markers_table: db.tables.processed_events.clone(),
    };
    Fixture { db, consumer }
}

impl Fixture {
    /// An order for 3 units with a pending card payment; returns the payment.
    async fn paying_order(&self) -> Payment {
        self.paying_order_within(Duration::from_secs(900)).await
    }

    /// The same with a payment window of `window`.
    async fn paying_order_within(&self, window: Duration) -> Payment {
        let orders = &self.consumer.orders;
        let req = ApiRequest::post("/orders")
            .as_user("u1")
            .json(json!({"productId": "tea", "quantity": 3}));
        let (status, order) = parts(&http_edge::http::into_response(
            create_order::handle(orders, window, req.build()).await,
        ));
        assert_eq!(status, 201);
        let req = ApiRequest::post("/payments")
            .as_user("u1")
            .json(json!({"orderId": order["orderId"], "paymentMethod": "CARD"}));
        let (status, payment) = parts(&http_edge::http::into_response(
            initiate_payment::handle(
                orders,
                &self.consumer.payments,
                &self.consumer.provider,
                req.build(),
            )
            .await,
        ));
        assert_eq!(status, 201);
        serde_json::from_value(payment).unwrap()
    }

    /// Settles the payment as the callback would, returning the event it wrote.
    async fn settle(&self, payment: &Payment, status: PaymentStatus) -> String {
        let settled = Payment {
            payment_status: status,
            ..payment.clone()
        };
        let event_type = if status == PaymentStatus::Succeeded {
            EventType::PaymentSucceeded
        } else {
            EventType::PaymentFailed
        };
        self.db
            .client
            .update_item()
            .table_name(&self.db.tables.payments)
            .key("paymentId", AttributeValue::S(payment.payment_id.clone()))
            .update_expression("SET paymentStatus = :s")
            .expression_attribute_values(":s", AttributeValue::S(status.as_str().into()))
            .send()
            .await
            .unwrap();
        serde_json::to_string(
            &Envelope::new(event_type, "corr", "2026-11-22T00:00:00.000Z", &settled).unwrap(),
        )
        .unwrap()
    }

    /// Applies `transition` to the order as it is now.
    async fn transition(&self, order_id: &str, transition: OrderTransition) {
        let orders = &self.consumer.orders;
        let order = orders.get(order_id).await.unwrap().unwrap();
        orders
            .apply_transition(&order, transition, "test")
            .await
            .unwrap();
    }

    async fn order_status(&self, order_id: &str) -> OrderStatus {
        self.consumer
            .orders
            .get(order_id)
            .await
            .unwrap()
            .unwrap()
            .order_status
    }

    async fn counters(&self) -> (i64, i64, i64) {
        let p = self.db.product("tea").await;
        (p.stock, p.reserved, p.sold)
    }

    async fn order_events(&self, order_id: &str, event_type: &str) -> usize {
        self.db
            .events_of_type(event_type)
            .await
            .iter()
            .filter(|e| e["data"]["orderId"] == order_id)
            .count()
    }
}

#[tokio::test]
async fn the_same_payment_event_ten_times_pays_once() {
    let f = fixture().await;
    let payment = f.paying_order().await;
    let body = f.settle(&payment, PaymentStatus::Succeeded).await;
    // Redelivered within one batch and across batches.
    let response = f
        .consumer
        .handle_batch(batch(
            (0..5).map(|i| message(&format!("m{i}"), &body)).collect(),
        ))
        .await;
    assert!(response.batch_item_failures.is_empty());
    for i in 5..10 {
        let response = f
            .consumer
            .handle_batch(batch(vec![message(&format!("m{i}"), &body)]))
            .await;
        assert!(response.batch_item_failures.is_empty());
    }
    assert_eq!(f.order_status(&payment.order_id).await, OrderStatus::Paid);
    assert_eq!(f.counters().await, (7, 0, 3), "units sold once");
    assert_eq!(f.order_events(&payment.order_id, "OrderPaid").await, 1);
    let order = f
        .consumer
        .orders
        .get(&payment.order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        order.paid_payment_id.as_deref(),
        Some(payment.payment_id.as_str())
    );
}

#[tokio::test]
async fn one_bad_message_fails_only_itself() {
    let f = fixture().await;
    let first = f.paying_order().await;
    let second = f.paying_order().await;
    let good1 = f.settle(&first, PaymentStatus::Succeeded).await;
    let good2 = f.settle(&second, PaymentStatus::Failed).await;
    let response = f
        .consumer
        .handle_batch(batch(vec![
            message("ok-1", &good1),
            message("poison", "{not json"),
            message("ok-2", &good2),
        ]))
        .await;
    assert_eq!(failed_ids(&response), ["poison"]);
    assert_eq!(f.order_status(&first.order_id).await, OrderStatus::Paid);
    assert_eq!(
        f.order_status(&second.order_id).await,
        OrderStatus::PaymentFailed
    );
    assert_eq!(
        f.counters().await,
        (4, 3, 3),
        "the failed order keeps its reservation"
    );
}

#[tokio::test]
async fn success_for_an_order_that_cannot_take_it_is_refunded() {
    let f = fixture().await;
    let payment = f.paying_order().await;
    f.transition(&payment.order_id, OrderTransition::Cancel)
        .await;
    let body = f.settle(&payment, PaymentStatus::Succeeded).await;
    let response = f
        .consumer
        .handle_batch(batch(vec![message("late", &body)]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        f.order_status(&payment.order_id).await,
        OrderStatus::Cancelled
    );
    let refunded = f
        .consumer
        .payments
        .get(&payment.payment_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refunded.payment_status, PaymentStatus::Refunded);
    assert_eq!(f.counters().await, (10, 0, 0));
    // The refund event it wrote leaves the cancelled order alone.
    let out =
        f.db.client
            .scan()
            .table_name(&f.db.tables.events)
            .send()
            .await
            .unwrap();
    let refund_event = out
        .items()
        .iter()
        .map(|i| i["envelope"].as_s().unwrap().clone())
        .find(|e| e.contains("\"PaymentRefunded\""))
        .expect("a PaymentRefunded event");
    assert!(
        f.consumer
            .handle_batch(batch(vec![message("r", &refund_event)]))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        f.order_status(&payment.order_id).await,
        OrderStatus::Cancelled
    );
}

/// Issue 27.9: an order that stops being payable takes its pending payment
/// out of `PENDING` in the same transaction.
#[tokio::test]
async fn cancelling_or_expiring_an_order_expires_its_pending_payment() {
    let f = fixture().await;
    let cancelled = f.paying_order().await;
    f.transition(&cancelled.order_id, OrderTransition::Cancel)
        .await;
    let expired = f.paying_order_within(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.transition(&expired.order_id, OrderTransition::Expire)
        .await;
    for payment in [cancelled, expired] {
        let now = f
            .consumer
            .payments
            .get(&payment.payment_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.payment_status, PaymentStatus::Expired, "{payment:?}");
    }
    assert_eq!(f.counters().await, (10, 0, 0));
}

/// Issue 27.9: whether a late success pays the order is decided by when it
/// was settled, not by whether the expiry sweep has run yet.
#[tokio::test]
async fn a_success_settled_after_the_window_and_grace_is_refunded_before_any_sweep() {
    let f = fixture().await;
    let grace = time::Duration::milliseconds(1500);
    let orders = f.consumer.orders.clone().with_late_payment_grace(grace);
    let consumer = OrderStatusConsumer {
        orders: orders.clone(),
        payments: f.consumer.payments.clone(),
        provider: f.consumer.provider.clone(),
        markers_table: f.consumer.markers_table.clone(),
    };
    let in_time = f.paying_order_within(Duration::from_secs(1)).await;
    let late = f.paying_order_within(Duration::from_secs(1)).await;
    let expires_at =
        |payment: &Payment| time::OffsetDateTime::parse(&payment.expires_at, &Rfc3339).unwrap();
    // Settled 1 s after the window (inside the grace): pays the order.
    let settled = Payment {
        updated_at: domain::clock::rfc3339(expires_at(&in_time) + time::Duration::seconds(1)),
        ..in_time.clone()
    };
    let body = f.settle(&settled, PaymentStatus::Succeeded).await;
    let response = consumer
        .handle_batch(batch(vec![message("a", &body)]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(f.order_status(&in_time.order_id).await, OrderStatus::Paid);

    // Settled 2 s after (past the grace), the order still unpaid because
    // no sweep ran: refunded all the same.
    let settled = Payment {
        updated_at: domain::clock::rfc3339(expires_at(&late) + time::Duration::seconds(2)),
        ..late.clone()
    };
    let body = f.settle(&settled, PaymentStatus::Succeeded).await;
    let response = consumer
        .handle_batch(batch(vec![message("b", &body)]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        f.order_status(&late.order_id).await,
        OrderStatus::PendingPayment
    );
    let refunded = f
        .consumer
        .payments
        .get(&late.payment_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refunded.payment_status, PaymentStatus::Refunded);

    // The sweep waits out the grace, then expires it.
    let now = domain::clock::now();
    if now < expires_at(&late) + grace {
        assert!(orders.find_expired(now).await.unwrap().is_empty());
    }
    let wait = expires_at(&late) + grace + time::Duration::milliseconds(100) - now;
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    let due = orders.find_expired(domain::clock::now()).await.unwrap();
    assert_eq!(due.len(), 1);
    let outcome = orders
        .apply_transition(&due[0], OrderTransition::Expire, "s")
        .await
        .unwrap();
    assert!(
        matches!(outcome, adapters::orders::Transition::Applied(_)),
        "{outcome:?}"
    );
    assert_eq!(f.counters().await, (7, 0, 3));
}

#[tokio::test]
async fn refund_of_the_paying_payment_refunds_the_order_and_restocks() {
    let f = fixture().await;
    let payment = f.paying_order().await;
    let body = f.settle(&payment, PaymentStatus::Succeeded).await;
    f.consumer
        .handle_batch(batch(vec![message("pay", &body)]))
        .await;
    assert_eq!(f.counters().await, (7, 0, 3));
    let paid = f
        .consumer
        .payments
        .get(&payment.payment_id)
        .await
        .unwrap()
        .unwrap();
    f.consumer
        .payments
        .refund(&paid, &f.consumer.provider, "test", "corr")
        .await
        .unwrap();
    let out =
        f.db.client
            .scan()
            .table_name(&f.db.tables.events)
            .send()
            .await
            .unwrap();
    let refund_event = out
        .items()
        .iter()
        .map(|i| i["envelope"].as_s().unwrap().clone())
        .find(|e| e.contains("\"PaymentRefunded\""))
        .unwrap();
    for i in 0..3 {
        let response = f
            .consumer
            .handle_batch(batch(vec![message(&format!("r{i}"), &refund_event)]))
            .await;
        assert!(response.batch_item_failures.is_empty());
    }
    assert_eq!(
        f.order_status(&payment.order_id).await,
        OrderStatus::Refunded
    );
    assert_eq!(f.counters().await, (10, 0, 0), "restocked once");
    assert_eq!(f.order_events(&payment.order_id, "OrderRefunded").await, 1);
}

/// Issue 28.1: a record SNS can never take is set aside, and the batch
/// (and so the stream behind it) goes on. The SNS client points nowhere: a
/// record that reached it would fail the batch as retryable.
#[tokio::test]
async fn an_oversized_outbox_record_is_set_aside_not_retried_forever() {
    use aws_lambda_events::event::dynamodb::{Event, EventRecord};
    let config = system_tests::dynamo::local_config("http://127.0.0.1:1").await;
    let publisher = publish_events::Publisher {
        sns: aws_sdk_sns::Client::new(&config),
        topic_arn: "arn:aws:sns:us-east-1:000000000000:events".into(),
        faults: publish_events::FaultHook::from_env("NO_SUCH_SETTING"),
    };
    let record = |envelope: String| {
        let mut record = EventRecord::default();
        record.event_name = "INSERT".into();
        record.change.new_image = serde_dynamo::to_item(json!({
            "eventId": "e1", "type": "RebateCredited", "envelope": envelope,
        }))
        .unwrap();
        record
    };
    let oversized = "x".repeat(publish_events::SNS_MAX_MESSAGE_BYTES + 1);
    let mut event = Event::default();
    event.records = vec![
        record(oversized.clone()),
        record("not json, but small".into()),
    ];
    use publish_events::FailureReport;
    let outcome =
        publish_events::publish_stream_batch(&publisher, event, FailureReport::Invocation).await;
    // The small record reached the (absent) topic and failed as retryable;
    // the oversized one did not make the batch fail by itself:
    assert!(
        matches!(outcome, Err(publish_events::PublishError::Retryable(_))),
        "{outcome:?}"
    );
    let mut alone = Event::default();
    alone.records = vec![record(oversized.clone())];
    let outcome =
        publish_events::publish_stream_batch(&publisher, alone, FailureReport::Invocation).await;
    // Nothing to retry: the set-aside record is not a failure.
    assert!(
        matches!(&outcome, Ok(response) if response.batch_item_failures.is_empty()),
        "{outcome:?}"
    );

    // Issue 26.5: on AWS the batch answers with the first record that failed
    // (set-aside ones are not failures), so the mapping retries from there
    // and bisects; on the local stack the invocation fails instead.
    let batch = || {
        let mut event = Event::default();
        event.records = ["100", "200", "300"]
            .into_iter()
            .zip([oversized.clone(), "small".into(), "small too".into()])
            .map(|(sequence, envelope)| {
                let mut r = record(envelope);
                r.change.sequence_number = Some(sequence.into());
                r
            })
            .collect();
        event
    };
    let response =
        publish_events::publish_stream_batch(&publisher, batch(), FailureReport::BatchItem)
            .await
            .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["200"]);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "200"}]})
    );
    assert!(matches!(
        publish_events::publish_stream_batch(&publisher, batch(), FailureReport::Invocation).await,
        Err(publish_events::PublishError::Retryable(_))
    ));
}

/// Found by the fulfilment e2e test: a redelivered `PaymentSucceeded` found
/// the order shipped (or completed) and, as the order "could not take it",
/// refunded the payment that had paid it. The order's own payment is never
/// refunded by a redelivery, whatever the order became since.
#[tokio::test]
async fn a_redelivered_success_after_shipping_or_receipt_refunds_nothing() {
    let f = fixture().await;
    for later in [
        vec![OrderTransition::Ship],
        vec![OrderTransition::Ship, OrderTransition::ConfirmReceipt],
    ] {
        let payment = f.paying_order().await;
        let body = f.settle(&payment, PaymentStatus::Succeeded).await;
        let first = f
            .consumer
            .handle_batch(batch(vec![message("first", &body)]))
            .await;
        assert!(first.batch_item_failures.is_empty());
        let orders = &f.consumer.orders;
        for transition in &later {
            let order = orders.get(&payment.order_id).await.unwrap().unwrap();
            let context = adapters::orders::TransitionContext {
                shipment: Some(domain::orders::Shipment {
                    carrier: "SF".into(),
                    tracking_number: "SF1".into(),
                    shipped_at: "2026-12-02T00:00:00Z".into(),
                }),
                ..Default::default()
            };
            assert!(matches!(
                orders
                    .apply_transition_with(&order, *transition, "test", &context)
                    .await
                    .unwrap(),
                adapters::orders::Transition::Applied(_)
            ));
        }
        // The same event again, as SQS redelivers it.
        let again = f
            .consumer
            .handle_batch(batch(vec![message("again", &body)]))
            .await;
        assert!(again.batch_item_failures.is_empty());
        let stored = f
            .consumer
            .payments
            .get(&payment.payment_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.payment_status, PaymentStatus::Succeeded, "{later:?}");
        assert!(
            f.db.events_of_type("PaymentRefunded").await.is_empty(),
            "{later:?}"
        );
    }
}
