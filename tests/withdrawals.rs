//! Withdrawals in-process against DynamoDB Local: the routes' rules,
//! racing requests against one balance, the review queue, and payouts
//! through a provider that pays once per withdrawal id, fails, or loses
//! its answer, with the balance equal to its ledger after every step.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use adapters::rebates::Rebates;
use adapters::withdrawals::Withdrawals;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::payments::ProviderError;
use domain::rebates::EntryStatus;
use domain::withdrawals::{PayoutOrder, PayoutProvider, PayoutState, WithdrawalPolicy};
use pay_withdrawals::PayoutConsumer;
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;
use system_tests::sqs::{batch, failed_ids, message};

const POLICY: WithdrawalPolicy = WithdrawalPolicy {
    minimum: 100,
    daily_cap: 10_000,
    review_threshold: 5_000,
};

/// What the scripted provider does with the next transfer it is sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    Pay,
    /// Refuses the payee for good.
    Refuse,
    /// Pays, and the answer is lost on the way back (a timeout).
    PayAndLoseTheAnswer,
    /// The request never arrives (a timeout before it reached the provider).
    LoseTheRequest,
}

/// A provider that, like Alipay and WeChat Pay, pays one transfer per
/// withdrawal id however often it is sent, and answers queries from what
/// it did.
#[derive(Default)]
struct ScriptedProvider {
    script: Mutex<VecDeque<Next>>,
    /// Transfers it holds, by withdrawal id.
    transfers: Mutex<HashMap<String, PayoutState>>,
    /// Every transfer request that reached it.
    received: Mutex<Vec<String>>,
}

impl ScriptedProvider {
    fn with(script: &[Next]) -> Self {
        Self {
            script: Mutex::new(script.iter().copied().collect()),
            ..Self::default()
        }
    }

    fn paid_count(&self) -> usize {
        self.transfers
            .lock()
            .unwrap()
            .values()
            .filter(|s| matches!(s, PayoutState::Paid { .. }))
            .count()
    }
}

impl PayoutProvider for ScriptedProvider {
    async fn transfer(&self, payout: &PayoutOrder) -> Result<PayoutState, ProviderError> {
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Next::Pay);
        if next == Next::LoseTheRequest {
            return Err(ProviderError::Unavailable("timed out".into()));
        }
        self.received
            .lock()
            .unwrap()
            .push(payout.withdrawal_id.clone());
        let state = self
            .transfers
            .lock()
            .unwrap()
            .entry(payout.withdrawal_id.clone())
            .or_insert_with(|| match next {
                Next::Refuse => PayoutState::Failed {
                    reason: "PAYEE_NOT_EXIST".into(),
                },
                _ => PayoutState::Paid {
                    reference: format!("ref-{}", payout.withdrawal_id),
                },
            })
            .clone();
        match next {
            Next::PayAndLoseTheAnswer => Err(ProviderError::Unavailable("timed out".into())),
            _ => Ok(state),
        }
    }

    async fn query_transfer(
        &self,
        payout: &PayoutOrder,
    ) -> Result<Option<PayoutState>, ProviderError> {
        Ok(self
            .transfers
            .lock()
            .unwrap()
            .get(&payout.withdrawal_id)
            .cloned())
    }
}

struct Fixture {
    db: TestDb,
    withdrawals: Withdrawals,
    rebates: Rebates,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let withdrawals = Withdrawals::new(db.client.clone(), db.tables.clone()).with_policy(POLICY);
    let rebates = Rebates::new(db.client.clone(), db.tables.clone());
    Fixture {
        db,
        withdrawals,
        rebates,
    }
}

fn user() -> String {
    format!("u-{}", domain::ids::new_id())
}

fn alipay(amount: i64) -> Value {
    json!({"amount": amount, "channel": "ALIPAY", "account": "buyer@example.com", "accountName": "张三"})
}

impl Fixture {
    /// Gives `user` an available credit of `amount` (an order received and
    /// past its window, released), its entry and its balance together.
    async fn earn(&self, user: &str, amount: i64) {
        let order_id = domain::ids::new_id();
        let now = domain::clock::now_rfc3339();
        let entry = json!({
            "entryId": format!("{order_id}-1"), "userId": user, "orderId": order_id,
            "kind": "CREDIT", "status": "AVAILABLE", "amount": amount, "currency": "CNY",
            "rulesVersion": 1, "lines": [], "month": &now[..7], "createdAt": now, "updatedAt": now,
        });
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(entry).unwrap();
        item.insert("pk".into(), AttributeValue::S(format!("USER#{user}")));
        item.insert(
            "sk".into(),
            AttributeValue::S(format!("ENTRY#{order_id}#1")),
        );
        let table = &self.db.tables.rebates;
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .unwrap();
        let balance = aws_sdk_dynamodb::types::Update::builder()
            .table_name(table)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .key("sk", AttributeValue::S("BALANCE#CNY".into()))
            .update_expression("SET currency = :c ADD available :a")
            .expression_attribute_values(":c", AttributeValue::S("CNY".into()))
            .expression_attribute_values(":a", AttributeValue::N(amount.to_string()))
            .build()
            .unwrap();
        self.db
            .client
            .transact_write_items()
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(put)
                    .build(),
            )
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .update(balance)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn request(&self, user: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = ApiRequest::post("/me/rebates/withdrawals")
            .as_user(user)
            .json(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        parts(&http_edge::http::into_response(
            request_withdrawal::handle(&self.withdrawals, req.build()).await,
        ))
    }

    async fn decide(&self, caller: ApiRequest, id: &str, body: Value) -> (u16, Value) {
        let req = caller.path_param("withdrawalId", id).json(body).build();
        parts(&http_edge::http::into_response(
            decide_withdrawal::handle(&self.withdrawals, req).await,
        ))
    }

    fn admin_decision(id: &str) -> ApiRequest {
        ApiRequest::post(&format!("/admin/withdrawals/{id}/decision")).as_admin("admin-1")
    }

    async fn mine(&self, user: &str) -> Value {
        let req = ApiRequest::get("/me/rebates/withdrawals")
            .as_user(user)
            .build();
        let (status, page) = parts(&http_edge::http::into_response(
            list_withdrawals::handle(&self.withdrawals, req).await,
        ));
        assert_eq!(status, 200, "{page}");
        page
    }

    /// Delivers every due withdrawal's event to the payout consumer as SQS
    /// would; the ids of the messages that failed (to be redelivered).
    async fn deliver_payouts(&self, provider: &ScriptedProvider) -> Vec<String> {
        let consumer = PayoutConsumer {
            withdrawals: self.withdrawals.clone(),
            provider,
        };
        let mut events = self.db.events_of_type("WithdrawalRequested").await;
        events.extend(self.db.events_of_type("WithdrawalApproved").await);
        let messages = events
            .iter()
            .map(|e| message(e["eventId"].as_str().unwrap(), &e.to_string()))
            .collect();
        failed_ids(&consumer.handle_batch(batch(messages)).await)
    }

    /// The user's CNY balance item as stored (empty if none).
    async fn balance_item(&self, user: &str) -> HashMap<String, AttributeValue> {
        self.db
            .client
            .get_item()
            .table_name(&self.db.tables.rebates)
            .key("pk", AttributeValue::S(format!("USER#{user}")))
            .key("sk", AttributeValue::S("BALANCE#CNY".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_default()
    }

    /// (available, in-flight withdrawal) after checking that the balance
    /// equals the sum of the available entries.
    async fn balance(&self, user: &str) -> (i64, Option<String>) {
        let (entries, _) = self.rebates.entries(user, 1000, None).await.unwrap();
        let ledger: i64 = entries
            .iter()
            .filter(|e| e.status == EntryStatus::Available)
            .map(|e| e.amount)
            .sum();
        let item = self.balance_item(user).await;
        let available = item
            .get("available")
            .and_then(|v| v.as_n().ok())
            .map_or(0, |n| n.parse().unwrap());
        assert_eq!(
            available, ledger,
            "balance drifted from the ledger: {entries:#?}"
        );
        let in_flight = item
            .get("withdrawalInFlight")
            .and_then(|v| v.as_s().ok())
            .cloned();
        (available, in_flight)
    }
}

#[tokio::test]
async fn bad_requests_name_the_field_or_rule_and_change_nothing() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 3000).await;
    let cases = [
        (
            json!({"amount": 0, "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": -100, "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 99, "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 100.5, "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": "100", "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 10_001, "channel": "ALIPAY", "account": "2088123412341234"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 100, "channel": "PAYPAL", "account": "2088123412341234"}),
            400,
            "channel",
        ),
        (
            json!({"amount": 100, "channel": "ALIPAY", "account": ""}),
            400,
            "account",
        ),
        (
            json!({"amount": 100, "channel": "ALIPAY", "account": "buyer@example.com"}),
            400,
            "accountName",
        ),
        (
            json!({"amount": 100, "channel": "WECHAT_PAY", "account": "o x"}),
            400,
            "account",
        ),
        (json!({"amount": 100, "channel": "ALIPAY"}), 400, "account"),
        (
            json!({"amount": 100, "channel": "ALIPAY", "account": "2088123412341234", "extra": 1}),
            400,
            "extra",
        ),
        (
            json!({"amount": 3001, "channel": "ALIPAY", "account": "2088123412341234"}),
            409,
            "3000",
        ),
    ];
    for (body, status, named) in cases {
        let (got, answer) = f.request(&u, body.clone(), None).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(answer.to_string().contains(named), "{body} → {answer}");
    }
    assert_eq!(f.balance(&u).await, (3000, None));
    assert_eq!(f.mine(&u).await["items"], json!([]));
}

#[tokio::test]
async fn twenty_racing_withdrawals_never_take_more_than_the_balance() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 2500).await;
    let keys: Vec<String> = (0..20).map(|i| format!("race-{i}")).collect();
    let answers =
        futures::future::join_all(keys.iter().map(|k| f.request(&u, alipay(1000), Some(k)))).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:#?}");
    for (status, answer) in &answers {
        assert!(
            *status == 201 || (*status == 409 && answer["error"]["code"] == "WITHDRAWAL_IN_FLIGHT"),
            "{status} {answer}"
        );
    }
    let id = created[0]["withdrawalId"].as_str().unwrap().to_owned();
    assert_eq!(f.balance(&u).await, (1500, Some(id.clone())));

    // The same key again is the same withdrawal, not a second one.
    let (status, again) = f.request(&u, alipay(1000), Some("race-0")).await;
    if answers[0].0 == 201 {
        assert_eq!(
            (status, again["withdrawalId"].as_str()),
            (201, Some(id.as_str()))
        );
    }
    // Paid, the slot frees: the rest of the balance can go, never more.
    let provider = ScriptedProvider::default();
    assert!(f.deliver_payouts(&provider).await.is_empty());
    assert_eq!(f.balance(&u).await, (1500, None));
    let keys: Vec<String> = (0..20).map(|i| format!("second-{i}")).collect();
    let answers =
        futures::future::join_all(keys.iter().map(|k| f.request(&u, alipay(1000), Some(k)))).await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(f.balance(&u).await.0, 500);
    assert!(f.deliver_payouts(&provider).await.is_empty());
    let (status, answer) = f.request(&u, alipay(1000), None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("INSUFFICIENT_BALANCE"))
    );
    assert_eq!(answer["error"]["available"], 500);
    assert_eq!(provider.paid_count(), 2);
    assert_eq!(f.balance(&u).await, (500, None));
}

#[tokio::test]
async fn a_day_takes_at_most_the_daily_cap() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 20_000).await;
    let provider = ScriptedProvider::default();
    for amount in [5_000, 4_000] {
        let (status, w) = f.request(&u, alipay(amount), None).await;
        assert_eq!(status, 201, "{w}");
        assert!(f.deliver_payouts(&provider).await.is_empty());
    }
    let (status, answer) = f.request(&u, alipay(1_001), None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("DAILY_WITHDRAWAL_CAP")),
        "{answer}"
    );
    assert_eq!(answer["error"]["withdrawnToday"], 9_000);
    let (status, _) = f.request(&u, alipay(1_000), None).await;
    assert_eq!(status, 201);
    assert_eq!(f.balance(&u).await.0, 10_000);
}

/// The cap is per UTC day: yesterday's total, however full, does not count
/// today, and today's total starts from the withdrawal that opens it.
#[tokio::test]
async fn a_new_day_starts_a_new_total() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 20_000).await;
    f.db.client
        .update_item()
        .table_name(&f.db.tables.rebates)
        .key("pk", AttributeValue::S(format!("USER#{u}")))
        .key("sk", AttributeValue::S("BALANCE#CNY".into()))
        .update_expression("SET withdrawnDay = :d, withdrawnToday = :t")
        .expression_attribute_values(":d", AttributeValue::S("2026-11-30".into()))
        .expression_attribute_values(":t", AttributeValue::N("10000".into()))
        .send()
        .await
        .unwrap();
    let (status, w) = f.request(&u, alipay(4_000), None).await;
    assert_eq!(status, 201, "{w}");
    let item = f.balance_item(&u).await;
    assert_eq!(item["withdrawnToday"].as_n().unwrap(), "4000");
    assert_eq!(
        item["withdrawnDay"].as_s().unwrap(),
        &domain::withdrawals::day_of(domain::clock::now())
    );
}

#[tokio::test]
async fn a_refused_payout_fails_and_returns_the_amount() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 3000).await;
    let (_, w) = f.request(&u, alipay(1000), None).await;
    let provider = ScriptedProvider::with(&[Next::Refuse]);
    assert!(f.deliver_payouts(&provider).await.is_empty());
    let mine = f.mine(&u).await;
    assert_eq!(mine["items"][0]["withdrawalStatus"], "FAILED", "{mine}");
    assert!(
        mine["items"][0]["failureReason"]
            .as_str()
            .unwrap()
            .contains("PAYEE_NOT_EXIST")
    );
    assert_eq!(f.balance(&u).await, (3000, None));
    // Redelivered: nothing more happens.
    assert!(f.deliver_payouts(&provider).await.is_empty());
    assert_eq!(f.balance(&u).await, (3000, None));
    assert_eq!(f.db.events_of_type("WithdrawalFailed").await.len(), 1);
    assert_eq!(
        provider.received.lock().unwrap().as_slice(),
        [w["withdrawalId"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_asking_and_paid_once() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 3000).await;
    let (_, w) = f.request(&u, alipay(1000), None).await;
    let id = w["withdrawalId"].as_str().unwrap();
    let provider = ScriptedProvider::with(&[Next::PayAndLoseTheAnswer]);
    // Unknown outcome: the message fails and stays for redelivery.
    assert_eq!(f.deliver_payouts(&provider).await.len(), 1);
    assert_eq!(
        f.mine(&u).await["items"][0]["withdrawalStatus"],
        "PROCESSING"
    );
    assert_eq!(f.balance(&u).await, (2000, Some(id.to_owned())));
    // Redelivered: the provider is asked, says paid; no second transfer.
    assert!(f.deliver_payouts(&provider).await.is_empty());
    let mine = f.mine(&u).await;
    assert_eq!(mine["items"][0]["withdrawalStatus"], "PAID", "{mine}");
    assert_eq!(mine["items"][0]["providerReference"], format!("ref-{id}"));
    assert_eq!(provider.received.lock().unwrap().len(), 1);
    assert_eq!(provider.paid_count(), 1);
    assert_eq!(f.balance(&u).await, (2000, None));
    assert_eq!(f.db.events_of_type("WithdrawalPaid").await.len(), 1);
}

#[tokio::test]
async fn a_request_that_never_arrived_is_sent_again_after_asking() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 3000).await;
    f.request(&u, alipay(1000), None).await;
    let provider = ScriptedProvider::with(&[Next::LoseTheRequest]);
    assert_eq!(f.deliver_payouts(&provider).await.len(), 1);
    assert!(provider.received.lock().unwrap().is_empty());
    // The provider has none under this id: sending it again is safe.
    assert!(f.deliver_payouts(&provider).await.is_empty());
    assert_eq!(f.mine(&u).await["items"][0]["withdrawalStatus"], "PAID");
    assert_eq!(f.mine(&u).await["items"][0]["payoutAttempts"], 2);
    assert_eq!(provider.paid_count(), 1);
}

#[tokio::test]
async fn large_withdrawals_wait_for_an_admin() {
    let f = fixture().await;
    let u = user();
    f.earn(&u, 20_000).await;
    let (status, w) = f.request(&u, alipay(6_000), None).await;
    assert_eq!(
        (status, w["withdrawalStatus"].as_str()),
        (201, Some("PENDING_REVIEW")),
        "{w}"
    );
    let id = w["withdrawalId"].as_str().unwrap().to_owned();
    let provider = ScriptedProvider::default();
    assert!(f.deliver_payouts(&provider).await.is_empty());
    assert!(
        provider.received.lock().unwrap().is_empty(),
        "not paid before review"
    );
    assert_eq!(f.balance(&u).await, (14_000, Some(id.clone())));

    // The admin's queue holds it; a shopper may not see the queue or decide.
    let queue = ApiRequest::get("/admin/withdrawals")
        .as_admin("admin-1")
        .build();
    let (_, page) = parts(&http_edge::http::into_response(
        find_withdrawals::handle(&f.withdrawals, queue).await,
    ));
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["withdrawalId"] == id.as_str())
    );
    let as_shopper = ApiRequest::get("/admin/withdrawals").as_user(&u).build();
    let (status, _) = parts(&http_edge::http::into_response(
        find_withdrawals::handle(&f.withdrawals, as_shopper).await,
    ));
    assert_eq!(status, 403);
    let shopper = ApiRequest::post(&format!("/admin/withdrawals/{id}/decision")).as_user(&u);
    let (status, _) = f.decide(shopper, &id, json!({"decision": "APPROVE"})).await;
    assert_eq!(status, 403);
    let (status, answer) = f
        .decide(
            Fixture::admin_decision(&id),
            &id,
            json!({"decision": "REJECT"}),
        )
        .await;
    assert_eq!(status, 400, "a rejection needs a reason: {answer}");
    let (status, _) = f
        .decide(
            Fixture::admin_decision("01JDQ5W1THDRAWA1000000000Z"),
            "01JDQ5W1THDRAWA1000000000Z",
            json!({"decision": "APPROVE"}),
        )
        .await;
    assert_eq!(status, 404);

    // Rejected: the amount is back; rejecting again is the same answer,
    // approving now is refused.
    let reject = json!({"decision": "REJECT", "reason": "name does not match"});
    let (status, rejected) = f
        .decide(Fixture::admin_decision(&id), &id, reject.clone())
        .await;
    assert_eq!(
        (status, rejected["withdrawalStatus"].as_str()),
        (200, Some("REJECTED"))
    );
    assert_eq!(f.balance(&u).await, (20_000, None));
    let (status, _) = f.decide(Fixture::admin_decision(&id), &id, reject).await;
    assert_eq!(status, 200);
    let (status, answer) = f
        .decide(
            Fixture::admin_decision(&id),
            &id,
            json!({"decision": "APPROVE"}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("WITHDRAWAL_DECIDED"))
    );
    assert_eq!(f.balance(&u).await, (20_000, None));

    // Approved: paid by the consumer. (Another user: the rejected 6,000
    // still count in u's day, see the README's decisions.)
    let u = user();
    f.earn(&u, 20_000).await;
    let (_, w) = f.request(&u, alipay(7_000), None).await;
    let id = w["withdrawalId"].as_str().unwrap().to_owned();
    let (status, approved) = f
        .decide(
            Fixture::admin_decision(&id),
            &id,
            json!({"decision": "APPROVE"}),
        )
        .await;
    assert_eq!(
        (status, approved["withdrawalStatus"].as_str()),
        (200, Some("PROCESSING"))
    );
    assert!(f.deliver_payouts(&provider).await.is_empty());
    let (status, again) = f
        .decide(
            Fixture::admin_decision(&id),
            &id,
            json!({"decision": "APPROVE"}),
        )
        .await;
    assert_eq!(
        (status, again["withdrawalStatus"].as_str()),
        (200, Some("PAID"))
    );
    assert_eq!(f.balance(&u).await, (13_000, None));
    assert_eq!(provider.paid_count(), 1);
}

#[tokio::test]
async fn a_user_sees_only_their_own_withdrawals() {
    let f = fixture().await;
    let (a, b) = (user(), user());
    f.earn(&a, 1000).await;
    f.request(&a, alipay(500), None).await;
    assert_eq!(f.mine(&a).await["items"].as_array().unwrap().len(), 1);
    assert_eq!(f.mine(&b).await["items"], json!([]));
    // Nor can b spend a's balance.
    let (status, _) = f.request(&b, alipay(500), None).await;
    assert_eq!(status, 409);
}
