//! Withdrawals through the deployed local stack: a rebate earned by a whole
//! order life (pay, ship, receipt, the after-sales window) withdrawn to
//! Alipay and WeChat Pay through their simulators (the real connectors),
//! racing requests on one balance, a payee that does not exist, an answer
//! lost after the provider paid, and the admin's review (the test stack
//! reviews above 1,000 fen). Each test has a user of its own
//! (`E2E_WITHDRAWAL_TOKENS`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system_tests::e2e::{Flow, REBATE_CATEGORY, Stack, entries_of, titles_for, unique_id};
use system_tests::simulator::Simulator;

fn tokens() -> Vec<String> {
    system_tests::required_env("E2E_WITHDRAWAL_TOKENS")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Earns `token` an available rebate of 2,500 fen (the monthly cap): an
/// order paid, shipped and received, and its after-sales window closed
/// (69 s on the test stack) before the release sweep runs.
async fn earn<'a>(stack: &'a Stack, token: &str) -> Flow<'a> {
    stack.ensure_rebate_rules().await;
    let product = stack
        .new_product_in(REBATE_CATEGORY, "e2e-withdrawal", 25_000, 10)
        .await;
    let flow = stack.order_with_payment(&product, 1, token).await;
    flow.notify("SUCCESS").await;
    flow.wait_for_order("PAID", Duration::from_secs(30)).await;
    flow.ship_and_receive().await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let statement = stack.rebate_statement(token).await;
        let entries = entries_of(&statement, &flow.order_id);
        if entries.iter().any(|e| e["status"] == "AVAILABLE") {
            break;
        }
        assert!(Instant::now() < deadline, "not available: {statement}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    flow
}

fn available(statement: &Value) -> i64 {
    statement["balance"]["available"].as_i64().unwrap()
}

/// The sum of the available entries equals the available balance.
async fn balanced(stack: &Stack, token: &str) -> i64 {
    let statement = stack.rebate_statement(token).await;
    let ledger: i64 = statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "AVAILABLE")
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(available(&statement), ledger, "{statement}");
    ledger
}

async fn withdraw(
    stack: &Stack,
    token: &str,
    body: Value,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/me/rebates/withdrawals", stack.api_url))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Twelve digits for an account of this run's own (nanoseconds of now).
fn rand_digits() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos % 1_000_000_000_000) as u64
}

/// Polls the caller's withdrawals until `id` is in `status`.
async fn wait_for_withdrawal(stack: &Stack, token: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, page) = stack
            .call(
                Method::GET,
                "/me/rebates/withdrawals?limit=100",
                Some(token),
                None,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let found = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["withdrawalId"] == id)
            .cloned();
        if let Some(w) = &found
            && w["withdrawalStatus"] == status
        {
            return w.clone();
        }
        assert!(Instant::now() < deadline, "{id} not {status}: {found:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The inbox's messages that name `id`, by title.
async fn told_about(stack: &Stack, token: &str, id: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inbox = stack.inbox(token).await;
        let titles: Vec<String> = inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["body"].as_str().unwrap_or("").contains(id))
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect();
        if !titles.is_empty() || Instant::now() > deadline {
            return titles;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_whole_life_ends_in_one_paid_withdrawal_of_twenty_racing() {
    let stack = Stack::from_env();
    let token = &tokens()[0];
    let flow = earn(&stack, token).await;
    assert_eq!(balanced(&stack, token).await, 2500);

    // Twenty at once, each with its own key: one is made, the others meet
    // the one in flight; the balance never goes below what was asked.
    // Alipay is down for this payee while the race is answered: otherwise
    // the first withdrawal can be paid (its slot freed) before the last
    // request arrives, and a later one is rightly made too. The payout
    // fails as unknown, and SQS delivers it again after the outage.
    let account = format!("2088{:012}", rand_digits());
    let alipay = Simulator::from_env("E2E_ALIPAY_SIMULATOR");
    alipay.outage(true, &account).await;
    let keys: Vec<String> = (0..20).map(|i| unique_id(&format!("race{i}"))).collect();
    let body = json!({"amount": 600, "channel": "ALIPAY", "account": account});
    let answers = futures::future::join_all(
        keys.iter()
            .map(|key| withdraw(&stack, token, body.clone(), Some(key))),
    )
    .await;
    alipay.outage(false, &account).await;
    let made: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, w)| w)
        .collect();
    assert_eq!(made.len(), 1, "{answers:#?}");
    for (status, answer) in &answers {
        assert!(
            *status == StatusCode::CREATED
                || (*status == StatusCode::CONFLICT
                    && answer["error"]["code"] == "WITHDRAWAL_IN_FLIGHT"),
            "{status} {answer}"
        );
    }
    let id = made[0]["withdrawalId"].as_str().unwrap().to_owned();
    let paid = wait_for_withdrawal(&stack, token, &id, "PAID").await;
    assert!(paid["providerReference"].is_string(), "{paid}");
    assert_eq!(balanced(&stack, token).await, 1900);

    // Alipay paid it once, for the amount.
    let (_, transfer) = alipay
        .call(Method::GET, &format!("/_sim/transfers/{id}"), None)
        .await;
    assert_eq!(
        (transfer["amount"].as_i64(), transfer["status"].as_str()),
        (Some(600), Some("SUCCESS")),
        "{transfer}"
    );

    // The same key again: the same withdrawal, nothing more taken.
    let winner = answers
        .iter()
        .position(|(s, _)| *s == StatusCode::CREATED)
        .unwrap();
    let (status, again) = withdraw(&stack, token, body.clone(), Some(&keys[winner])).await;
    assert_eq!(
        (status, again["withdrawalId"].as_str()),
        (StatusCode::CREATED, Some(id.as_str()))
    );
    assert_eq!(balanced(&stack, token).await, 1900);

    // The inbox told each step.
    let titles = titles_for(&stack.inbox(token).await, &flow.order_id);
    // (zh-CN, the default locale: created, paid, shipped, completed, credited.)
    for step in [
        "订单已创建",
        "支付成功",
        "订单已发货",
        "订单已完成",
        "返利已入账",
    ] {
        assert!(
            titles.keys().any(|t| t == step),
            "{step} missing: {titles:?}"
        );
    }
    assert_eq!(told_about(&stack, token, &id).await, ["提现成功"]);
}

#[tokio::test]
async fn failures_return_the_amount_lost_answers_pay_once_and_reviews_decide() {
    let stack = Stack::from_env();
    let token = &tokens()[1];
    earn(&stack, token).await;
    assert_eq!(balanced(&stack, token).await, 2500);

    // Bad input names the field or the rule and changes nothing.
    for (body, status, named) in [
        (
            json!({"amount": 0, "channel": "ALIPAY", "account": "2088000000000042"}),
            400,
            "amount",
        ),
        (
            json!({"amount": -5, "channel": "ALIPAY", "account": "2088000000000042"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 150.5, "channel": "ALIPAY", "account": "2088000000000042"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 1_000_000_000_000_i64, "channel": "ALIPAY", "account": "2088000000000042"}),
            400,
            "amount",
        ),
        (
            json!({"amount": 2600, "channel": "ALIPAY", "account": "2088000000000042"}),
            409,
            "INSUFFICIENT_BALANCE",
        ),
        (
            json!({"amount": 100, "channel": "CASH", "account": "2088000000000042"}),
            400,
            "channel",
        ),
        (
            json!({"amount": 100, "channel": "ALIPAY", "account": "buyer@example.com"}),
            400,
            "accountName",
        ),
        (
            json!({"amount": 100, "channel": "WECHAT_PAY"}),
            400,
            "account",
        ),
    ] {
        let (got, answer) = withdraw(&stack, token, body.clone(), None).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        assert!(answer.to_string().contains(named), "{body}: {answer}");
    }
    assert_eq!(balanced(&stack, token).await, 2500);

    // A payee Alipay does not know: FAILED, the amount back, told.
    let (status, w) = withdraw(
        &stack,
        token,
        json!({"amount": 500, "channel": "ALIPAY", "account": "nobody@example.com", "accountName": "无名"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let id = w["withdrawalId"].as_str().unwrap();
    let failed = wait_for_withdrawal(&stack, token, id, "FAILED").await;
    assert!(
        failed["failureReason"]
            .as_str()
            .unwrap()
            .contains("PAYEE_NOT_EXIST"),
        "{failed}"
    );
    assert_eq!(balanced(&stack, token).await, 2500);
    assert_eq!(told_about(&stack, token, id).await, ["提现失败"]);

    // Alipay pays, and its answers are lost (both sends of the first
    // attempt): the redelivery asks, finds it paid, and pays no more.
    let alipay = Simulator::from_env("E2E_ALIPAY_SIMULATOR");
    let lost = unique_id("lost");
    alipay
        .call(
            Method::POST,
            "/_sim/lose-answers",
            Some(json!({"matching": lost, "times": 2})),
        )
        .await;
    let (status, w) = withdraw(
        &stack,
        token,
        json!({"amount": 500, "channel": "ALIPAY", "account": format!("{lost}@example.com"), "accountName": "张三"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let id = w["withdrawalId"].as_str().unwrap();
    let paid = wait_for_withdrawal(&stack, token, id, "PAID").await;
    assert!(paid["payoutAttempts"].as_u64().unwrap() >= 2, "{paid}");
    let (_, transfer) = alipay
        .call(Method::GET, &format!("/_sim/transfers/{id}"), None)
        .await;
    assert_eq!(transfer["status"], "SUCCESS", "{transfer}");
    assert_eq!(
        transfer["amount"], 500,
        "one transfer of the amount: {transfer}"
    );
    assert_eq!(balanced(&stack, token).await, 2000);

    // WeChat Pay, to the user's balance.
    let openid = format!("o{}", unique_id("wd").replace('-', "_"));
    let (status, w) = withdraw(
        &stack,
        token,
        json!({"amount": 400, "channel": "WECHAT_PAY", "account": openid}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let id = w["withdrawalId"].as_str().unwrap();
    wait_for_withdrawal(&stack, token, id, "PAID").await;
    let wechat = Simulator::from_env("E2E_WECHATPAY_SIMULATOR");
    let (_, transfer) = wechat
        .call(Method::GET, &format!("/_sim/transfers/{id}"), None)
        .await;
    assert_eq!(
        (transfer["amount"].as_i64(), transfer["payee"].as_str()),
        (Some(400), Some(openid.as_str()))
    );
    assert_eq!(balanced(&stack, token).await, 1600);

    // Above the review threshold (1,000 fen here): an admin decides. The
    // shopper cannot; a rejection needs a reason and returns the amount.
    let (status, w) = withdraw(
        &stack,
        token,
        json!({"amount": 1500, "channel": "ALIPAY", "account": "2088000000000042"}),
        None,
    )
    .await;
    assert_eq!(
        (status, w["withdrawalStatus"].as_str()),
        (StatusCode::CREATED, Some("PENDING_REVIEW")),
        "{w}"
    );
    let id = w["withdrawalId"].as_str().unwrap().to_owned();
    assert_eq!(balanced(&stack, token).await, 100);
    let (status, answer) = withdraw(
        &stack,
        token,
        json!({"amount": 100, "channel": "ALIPAY", "account": "2088000000000042"}),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("WITHDRAWAL_IN_FLIGHT"))
    );
    let (_, queue) = stack
        .call(
            Method::GET,
            "/admin/withdrawals?status=PENDING_REVIEW&limit=100",
            Some(&stack.admin_token),
            None,
        )
        .await;
    assert!(
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["withdrawalId"] == id.as_str()),
        "{queue}"
    );
    let decision = format!("/admin/withdrawals/{id}/decision");
    let (status, _) = stack
        .call(
            Method::POST,
            &decision,
            Some(token),
            Some(json!({"decision": "APPROVE"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = stack
        .call(
            Method::POST,
            &decision,
            Some(&stack.admin_token),
            Some(json!({"decision": "REJECT"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let reject = json!({"decision": "REJECT", "reason": "the account is not the shopper's"});
    let decisions = futures::future::join_all((0..5).map(|_| {
        stack.call(
            Method::POST,
            &decision,
            Some(&stack.admin_token),
            Some(reject.clone()),
        )
    }))
    .await;
    for (status, answer) in &decisions {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(answer["withdrawalStatus"], "REJECTED");
    }
    let (status, answer) = stack
        .call(
            Method::POST,
            &decision,
            Some(&stack.admin_token),
            Some(json!({"decision": "APPROVE"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("WITHDRAWAL_DECIDED"))
    );
    assert_eq!(balanced(&stack, token).await, 1600, "returned once");
    assert_eq!(told_about(&stack, token, &id).await, ["提现未通过审核"]);
    // Never paid: the simulator never heard of it.
    let (status, _) = alipay
        .call(Method::GET, &format!("/_sim/transfers/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another shopper sees none of this user's withdrawals.
    let (_, theirs) = stack
        .call(
            Method::GET,
            "/me/rebates/withdrawals",
            Some(&stack.other_token),
            None,
        )
        .await;
    assert!(!theirs.to_string().contains(&id), "{theirs}");
}
