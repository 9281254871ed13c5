//! template.yaml agrees with the code, the sample events and the public
//! contract: every route has a handler and every handler a route.

use std::collections::BTreeSet;

use system_tests::repo_root;
use system_tests::template::{Route, Template, ref_target};

/// The binaries the workspace builds under functions/.
fn function_crates() -> BTreeSet<String> {
    std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/")
        .filter_map(|e| {
            let path = e.ok()?.path();
            path.join("Cargo.toml")
                .exists()
                .then(|| path.file_name()?.to_str().map(str::to_owned))?
        })
        .collect()
}

#[test]
fn every_function_crate_is_deployed_and_every_deployed_function_has_a_crate() {
    let deployed: BTreeSet<String> = Template::load()
        .functions()
        .into_iter()
        .map(|(_, bin)| bin)
        .collect();
    assert_eq!(deployed, function_crates());
}

#[test]
fn every_http_function_has_a_route() {
    let template = Template::load();
    let routed: BTreeSet<String> = template.routes().into_iter().map(|r| r.binary).collect();
    for (id, binary) in template.functions() {
        let source = std::fs::read_to_string(
            repo_root()
                .join("functions")
                .join(&binary)
                .join("src/main.rs"),
        )
        .unwrap();
        if source.contains("http_edge::http::serve") {
            assert!(
                routed.contains(&binary),
                "{id} ({binary}) serves HTTP but has no HttpApi event"
            );
        }
    }
}

#[test]
fn routes_are_unique_and_only_the_provider_callback_skips_the_jwt() {
    let routes = Template::load().routes();
    let keys: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(keys.len(), routes.len(), "duplicate route in {routes:?}");
    for Route {
        method,
        path,
        authorized,
        ..
    } in &routes
    {
        // Providers' callbacks: they hold no user token; their signatures
        // authenticate them.
        let public = method == "POST" && path.starts_with("/payments/notify");
        assert_eq!(*authorized, !public, "{method} {path}");
    }
}

#[test]
fn every_route_is_in_the_public_contract() {
    // The repository's own copy: a clone stands alone (no ../shared).
    let contract = std::fs::read_to_string(repo_root().join("docs/api-conventions.md"))
        .expect("docs/api-conventions.md");
    // Routes an issue names that the contract's table does not list yet
    // (README "API" lists them with the rest).
    const NAMED_BY_ISSUES: &[&str] = &[
        "GET /admin/rebate-rules", // issue 6, rebates
        "PUT /admin/rebate-rules", // issue 6, rebates
        "GET /me/preferences",     // issue 7, notifications
        "PUT /me/preferences",     // issue 7, notifications
    ];
    for route in Template::load().routes() {
        let key = format!("{} {}", route.method, route.path);
        if NAMED_BY_ISSUES.contains(&key.as_str()) {
            continue;
        }
        let row = format!("| `{key}` |");
        assert!(
            contract.contains(&row),
            "{} {} is not a route of api-conventions.md",
            route.method,
            route.path
        );
    }
}

#[test]
fn sample_events_parse_and_match_a_route_of_their_function() {
    let routes = Template::load().routes();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("events")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let Some(route_key) = event["routeKey"].as_str() else {
            // A scheduled, stream or queue event: it must name a deployed
            // function and parse as that kind of event.
            let functions = Template::load().functions();
            assert!(
                functions.iter().any(|(_, b)| *b == name),
                "events/{name}.json names no function"
            );
            match event["Records"][0]["eventSource"].as_str() {
                Some("aws:dynamodb") => {
                    serde_json::from_value::<aws_lambda_events::event::dynamodb::Event>(
                        event.clone(),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Some("aws:sqs") => {
                    serde_json::from_value::<aws_lambda_events::event::sqs::SqsEvent>(
                        event.clone(),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                _ => assert_eq!(
                    event["detail-type"], "Scheduled Event",
                    "events/{name}.json"
                ),
            }
            seen.insert(name);
            continue;
        };
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let route = routes
            .iter()
            .find(|r| name == r.binary || name.starts_with(&format!("{}-", r.binary)))
            .unwrap_or_else(|| panic!("events/{name}.json names no deployed function"));
        assert_eq!(
            route_key,
            format!("{} {}", route.method, route.path),
            "events/{name}.json"
        );
        seen.insert(route.binary.clone());
    }
    for (id, binary) in Template::load().functions() {
        assert!(
            seen.contains(&binary),
            "no sample event for {id} ({binary})"
        );
    }
}

#[test]
fn tables_keep_their_data() {
    let template = Template::load();
    for (id, table) in template.resources_of_type("AWS::DynamoDB::Table") {
        assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"), "{id}");
        assert_eq!(
            table["UpdateReplacePolicy"].as_str(),
            Some("Retain"),
            "{id}"
        );
        let props = &table["Properties"];
        assert_eq!(
            props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true),
            "{id}"
        );
        assert_eq!(
            props["SSESpecification"]["SSEEnabled"].as_bool(),
            Some(true),
            "{id}"
        );
    }
    // Issue 26.4: so are the customer accounts.
    let pool = &template.0["Resources"]["UserPool"];
    assert_eq!(pool["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(pool["UpdateReplacePolicy"].as_str(), Some("Retain"));
    let protection = format!("{:?}", pool["Properties"]["DeletionProtection"]);
    assert!(
        protection.contains("IsLocal") && protection.contains("ACTIVE"),
        "{protection}"
    );
    let mfa = format!("{:?}", pool["Properties"]["MfaConfiguration"]);
    assert!(mfa.contains("UserMfa"), "{mfa}");
}

#[test]
fn function_policies_name_their_actions_and_resources() {
    let template = Template::load();
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let policies = function["Properties"]["Policies"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for policy in policies {
            let statements = policy["Statement"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{id}: inline statements only"));
            for statement in statements {
                let text = serde_yaml::to_string(statement).unwrap();
                for field in ["Action", "Resource"] {
                    let value = &statement[field];
                    let values: Vec<&serde_yaml::Value> = match value.as_sequence() {
                        Some(seq) => seq.iter().collect(),
                        None => vec![value],
                    };
                    for v in values {
                        if let Some(s) = v.as_str() {
                            assert!(
                                s != "*" && !s.ends_with(":*"),
                                "{id}: wildcard {field} in\n{text}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Test files sit at the top of tests/, where cargo does not discover them
/// by itself: each must be declared, or it would silently never run.
#[test]
fn every_test_file_is_declared() {
    let manifest = std::fs::read_to_string(repo_root().join("tests/Cargo.toml")).unwrap();
    for entry in std::fs::read_dir(repo_root().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(
                manifest.contains(&format!("path = \"{file}\"")),
                "tests/{file} is not a [[test]] in tests/Cargo.toml"
            );
        }
    }
}

/// `X` of `!GetAtt X.Arn` (either form).
fn arn_of(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::Tagged(tagged) if tagged.tag == "!GetAtt" => tagged
            .value
            .as_str()
            .and_then(|s| s.strip_suffix(".Arn"))
            .map(str::to_owned),
        serde_yaml::Value::Mapping(m) => {
            let parts = m.get("Fn::GetAtt")?.as_sequence()?;
            (parts.get(1)?.as_str()? == "Arn").then(|| parts[0].as_str().map(str::to_owned))?
        }
        _ => None,
    }
}

/// Issue 5's fan-out, for every consumer queue in the template: a DLQ after
/// 5 receives, a visibility timeout of at least 6 consumer timeouts, a raw
/// subscription filtered on `type`, a queue policy admitting the topic, one
/// consumer reporting partial batch failures, and outputs naming the queue
/// and its DLQ (which the end-to-end DLQ test walks).
#[test]
fn every_consumer_queue_is_wired_to_the_topic_a_dlq_and_one_consumer() {
    let template = Template::load();
    let params = &template.0["Parameters"];
    assert!(
        params["QueueVisibilityTimeoutSeconds"]["Default"]
            .as_u64()
            .unwrap()
            >= 6 * params["ConsumerTimeoutSeconds"]["Default"]
                .as_u64()
                .unwrap()
    );
    let queues: Vec<(&str, &serde_yaml::Value)> =
        template.resources_of_type("AWS::SQS::Queue").collect();
    let consumed = consumed_queues(&template);
    let consumers: Vec<_> = queues
        .iter()
        .filter(|(id, _)| consumed.contains(*id))
        .collect();
    assert!(consumers.len() >= 2);
    let policy_queues: Vec<String> = template
        .resources_of_type("AWS::SQS::QueuePolicy")
        .flat_map(|(_, p)| p["Properties"]["Queues"].as_sequence().unwrap().clone())
        .filter_map(|q| ref_target(&q).map(str::to_owned))
        .collect();
    let outputs = &template.0["Outputs"];
    for (id, queue) in consumers {
        let props = &queue["Properties"];
        assert_eq!(
            props["RedrivePolicy"]["maxReceiveCount"].as_u64(),
            Some(5),
            "{id}"
        );
        assert_eq!(
            ref_target(&props["VisibilityTimeout"]),
            Some("QueueVisibilityTimeoutSeconds"),
            "{id}"
        );
        let dlq = arn_of(&props["RedrivePolicy"]["deadLetterTargetArn"])
            .unwrap_or_else(|| panic!("{id} has no DLQ"));
        assert!(
            policy_queues.iter().any(|q| q == id),
            "{id} not in a queue policy"
        );
        let subscriptions: Vec<_> = template
            .resources_of_type("AWS::SNS::Subscription")
            .filter(|(_, s)| arn_of(&s["Properties"]["Endpoint"]).as_deref() == Some(*id))
            .collect();
        assert_eq!(subscriptions.len(), 1, "{id}: one subscription");
        let sub = &subscriptions[0].1["Properties"];
        assert_eq!(sub["RawMessageDelivery"].as_bool(), Some(true), "{id}");
        assert!(
            arn_of(&sub["RedrivePolicy"]["deadLetterTargetArn"]).is_some(),
            "{id}: what SNS cannot deliver must be kept"
        );
        assert!(
            !sub["FilterPolicy"]["type"]
                .as_sequence()
                .unwrap()
                .is_empty(),
            "{id}: filter on type"
        );
        let mut readers = 0;
        for (function, f) in template.resources_of_type("AWS::Serverless::Function") {
            for (_, event) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
                if event["Type"] == "SQS"
                    && arn_of(&event["Properties"]["Queue"]).as_deref() == Some(*id)
                {
                    readers += 1;
                    let types = event["Properties"]["FunctionResponseTypes"].as_sequence();
                    assert!(
                        types.is_some_and(|t| t.iter().any(|v| v == "ReportBatchItemFailures")),
                        "{function} must report partial batch failures"
                    );
                }
            }
        }
        assert_eq!(readers, 1, "{id}: exactly one consumer");
        for name in [id.to_string(), dlq] {
            assert_eq!(
                ref_target(&outputs[format!("{name}Url")]["Value"]),
                Some(name.as_str()),
                "output {name}Url"
            );
        }
    }
}

/// events/README.md documents one example per event type; each must parse
/// as an envelope whose data is what the consumers read.
#[test]
fn the_event_catalogue_has_one_valid_example_per_type() {
    use domain::events::{Envelope, EventType};
    let text = std::fs::read_to_string(repo_root().join("events/README.md")).unwrap();
    let mut seen = Vec::new();
    for block in text.split("```json").skip(1) {
        let json = block.split("```").next().unwrap();
        let envelope: Envelope =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e} in\n{json}"));
        let data = envelope.data.clone();
        let checked = match envelope.event_type {
            EventType::OrderCreated
            | EventType::OrderPaid
            | EventType::OrderPaymentFailed
            | EventType::OrderCancelled
            | EventType::OrderExpired
            | EventType::OrderRefunded
            | EventType::OrderShipped
            | EventType::OrderCompleted => {
                serde_json::from_value::<domain::orders::Order>(data).map(|_| ())
            }
            EventType::OrderLinesRefunded => {
                serde_json::from_value::<domain::orders::Order>(data["order"].clone())
                    .and_then(|_| {
                        serde_json::from_value::<domain::refund_requests::RefundRequest>(
                            data["refundRequest"].clone(),
                        )
                    })
                    .map(|_| ())
            }
            EventType::PaymentSucceeded | EventType::PaymentFailed => {
                serde_json::from_value::<domain::payments::Payment>(data).map(|_| ())
            }
            EventType::PaymentRefunded => {
                serde_json::from_value::<domain::payments::Payment>(data["payment"].clone())
                    .map(|_| ())
            }
            EventType::RebateCredited | EventType::RebateReversed => {
                serde_json::from_value::<domain::rebates::LedgerEntry>(data).map(|_| ())
            }
            EventType::WithdrawalRequested
            | EventType::WithdrawalApproved
            | EventType::WithdrawalRejected
            | EventType::WithdrawalPaid
            | EventType::WithdrawalFailed => {
                serde_json::from_value::<domain::withdrawals::Withdrawal>(data).map(|_| ())
            }
        };
        checked.unwrap_or_else(|e| panic!("{:?}: {e}", envelope.event_type));
        assert!(
            text.contains(&format!(
                "| `{}` |",
                serde_json::to_value(envelope.event_type)
                    .unwrap()
                    .as_str()
                    .unwrap()
            )),
            "{:?} missing from the table",
            envelope.event_type
        );
        seen.push(envelope.event_type);
    }
    let all = [
        EventType::OrderCreated,
        EventType::OrderPaid,
        EventType::OrderPaymentFailed,
        EventType::OrderCancelled,
        EventType::OrderExpired,
        EventType::OrderRefunded,
        EventType::OrderShipped,
        EventType::OrderCompleted,
        EventType::OrderLinesRefunded,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentRefunded,
        EventType::RebateCredited,
        EventType::RebateReversed,
        EventType::WithdrawalRequested,
        EventType::WithdrawalApproved,
        EventType::WithdrawalRejected,
        EventType::WithdrawalPaid,
        EventType::WithdrawalFailed,
    ];
    assert_eq!(seen, all, "one example per type, in this order");
}

/// The queues some function consumes (an `SQS` event on it).
fn consumed_queues(template: &Template) -> BTreeSet<String> {
    template
        .resources_of_type("AWS::Serverless::Function")
        .flat_map(|(_, f)| {
            f["Properties"]["Events"]
                .as_mapping()
                .into_iter()
                .flat_map(|events| events.values())
                .filter(|e| e["Type"].as_str() == Some("SQS"))
                .filter_map(|e| arn_of(&e["Properties"]["Queue"]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `X` of `!GetAtt X.QueueName`.
fn queue_name_of(value: &serde_yaml::Value) -> Option<&str> {
    match value {
        serde_yaml::Value::Tagged(tagged) if tagged.tag == "!GetAtt" => {
            tagged.value.as_str()?.strip_suffix(".QueueName")
        }
        _ => None,
    }
}

/// Issue 10's alarms: every queue of failures alarms at one message, every
/// function on its first failed invocation, the API on its 5xx rate and
/// createOrder on its p99; each one tells the alarm topic, both ways.
#[test]
fn dead_letters_failures_5xx_and_create_order_latency_raise_alarms_on_the_alarm_topic() {
    let template = Template::load();
    let alarms: Vec<(&str, &serde_yaml::Value)> = template
        .resources_of_type("AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id, &r["Properties"]))
        .collect();
    assert!(!alarms.is_empty());
    for (id, alarm) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let targets: Vec<_> = alarm[actions]
                .as_sequence()
                .unwrap_or_else(|| panic!("{id} has no {actions}"))
                .iter()
                .filter_map(ref_target)
                .collect();
            assert_eq!(targets, ["AlarmTopic"], "{id} {actions}");
        }
        assert_eq!(
            alarm["TreatMissingData"].as_str(),
            Some("notBreaching"),
            "{id}"
        );
    }
    let dimension = |alarm: &serde_yaml::Value, name: &str| -> Option<serde_yaml::Value> {
        alarm["Dimensions"]
            .as_sequence()?
            .iter()
            .find(|d| d["Name"].as_str() == Some(name))
            .map(|d| d["Value"].clone())
    };
    let watching = |namespace: &str, metric: &str| -> Vec<&serde_yaml::Value> {
        alarms
            .iter()
            .filter(|(_, a)| {
                a["Namespace"].as_str() == Some(namespace)
                    && a["MetricName"].as_str() == Some(metric)
            })
            .map(|(_, a)| *a)
            .collect()
    };

    // Every callback function that can learn of a refund the provider could
    // not pay raises an alarm on it.
    for function in ["WechatPayNotifyFunction", "StripeNotifyFunction"] {
        assert!(
            watching("Shop", "RefundsFailed")
                .iter()
                .any(|a| dimension(a, "function").as_ref().and_then(ref_target) == Some(function)),
            "no RefundsFailed alarm for {function}"
        );
    }

    // Every queue no function consumes holds what failed: the consumers'
    // DLQs and the queue of undeliverable events and failed schedules.
    let consumed = consumed_queues(&template);
    let dead_letter_queues: BTreeSet<String> = template
        .resources_of_type("AWS::SQS::Queue")
        .map(|(id, _)| id.to_owned())
        .filter(|id| !consumed.contains(id))
        .collect();
    assert!(dead_letter_queues.len() >= 5, "{dead_letter_queues:?}");
    let depth_alarms = watching("AWS/SQS", "ApproximateNumberOfMessagesVisible");
    for dlq in &dead_letter_queues {
        let alarm = depth_alarms
            .iter()
            .find(|a| {
                dimension(a, "QueueName").as_ref().and_then(queue_name_of) == Some(dlq.as_str())
            })
            .unwrap_or_else(|| panic!("no depth alarm on {dlq}"));
        assert_eq!(alarm["Threshold"].as_u64(), Some(1), "{dlq}");
        assert_eq!(
            alarm["ComparisonOperator"].as_str(),
            Some("GreaterThanOrEqualToThreshold"),
            "{dlq}"
        );
    }

    let error_alarms = watching("AWS/Lambda", "Errors");
    for (function, _) in template.functions() {
        let count = error_alarms
            .iter()
            .filter(|a| {
                dimension(a, "FunctionName").as_ref().and_then(ref_target)
                    == Some(function.as_str())
            })
            .count();
        assert_eq!(count, 1, "{function} needs exactly one Errors alarm");
    }

    let api = watching("AWS/ApiGateway", "5xx");
    assert_eq!(api.len(), 1);
    assert_eq!(
        dimension(api[0], "ApiId").as_ref().and_then(ref_target),
        Some("HttpApi")
    );
    // Average of a 0-or-1-per-response metric is the rate.
    assert_eq!(api[0]["Statistic"].as_str(), Some("Average"));

    let latency = watching("AWS/Lambda", "Duration");
    assert_eq!(latency.len(), 1);
    assert_eq!(
        dimension(latency[0], "FunctionName")
            .as_ref()
            .and_then(ref_target),
        Some("CreateOrderFunction")
    );
    assert_eq!(latency[0]["ExtendedStatistic"].as_str(), Some("p99"));
}

/// Issue 10's logs and traces: JSON lines and active X-Ray for every function
/// (set once, in Globals, and overridden by none).
#[test]
fn every_function_logs_json_and_is_traced() {
    let template = Template::load();
    let globals = &template.0["Globals"]["Function"];
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(globals["Tracing"].as_str(), Some("Active"));
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let props = &function["Properties"];
        assert!(
            props["LoggingConfig"].is_null(),
            "{id} overrides LoggingConfig"
        );
        assert!(props["Tracing"].is_null(), "{id} overrides Tracing");
    }
}

/// openapi.yaml describes exactly the template's routes, each with the
/// security the template gives it, and every operation documents its
/// errors with the conventions' error body.
#[test]
fn the_openapi_spec_matches_the_templates_routes() {
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml")).expect("openapi.yaml");
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).expect("openapi.yaml parses");
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, operation) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if method == "parameters" {
                continue;
            }
            // An empty `security` list opts out of the JWT authorizer.
            let authorized = operation["security"]
                .as_sequence()
                .is_none_or(|s| !s.is_empty());
            let responses = operation["responses"].as_mapping().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|k| k.as_str().is_some_and(|s| s.starts_with('4'))),
                "{method} {path:?} documents no 4xx"
            );
            documented.push((
                method.to_uppercase(),
                path.as_str().unwrap().to_owned(),
                authorized,
            ));
        }
    }
    documented.sort();
    let mut routes: Vec<_> = Template::load()
        .routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.authorized))
        .collect();
    routes.sort();
    assert_eq!(
        documented, routes,
        "openapi.yaml (left) vs template.yaml (right)"
    );
}

/// Every success status a route's handler can answer is documented for it
/// (issue 27.7: cancel's 202 and payments' 200 were not, and schemathesis
/// cannot reach them: they need a paid order or a pending payment). Read
/// from the handler's source: each `StatusCode::…` it names, 201 for
/// `created(…)`, 200 and 304 for `cacheable_json(…)`.
#[test]
fn every_success_status_a_handler_answers_is_in_the_spec() {
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml")).expect("openapi.yaml");
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).expect("openapi.yaml parses");
    let statuses = [
        ("StatusCode::OK", "200"),
        ("StatusCode::CREATED", "201"),
        ("StatusCode::ACCEPTED", "202"),
        ("StatusCode::NO_CONTENT", "204"),
        ("StatusCode::NOT_MODIFIED", "304"),
        ("created(", "201"),
        ("cacheable_json(", "200"),
        ("cacheable_json(", "304"),
    ];
    for route in Template::load().routes() {
        let source = repo_root().join(format!("functions/{}/src/lib.rs", route.binary));
        let Ok(code) = std::fs::read_to_string(&source) else {
            continue;
        };
        let responses =
            &spec["paths"][route.path.as_str()][route.method.to_lowercase().as_str()]["responses"];
        for (needle, status) in statuses {
            if code.contains(needle) {
                assert!(
                    !responses[status].is_null(),
                    "{} {} answers {status} ({needle} in {}) but openapi.yaml does not say so",
                    route.method,
                    route.path,
                    source.display()
                );
            }
        }
    }
}

/// Every `!Equals [!Ref Param, "0"]` under `value`: the parameters it pins to 0.
fn pinned_to_zero(value: &serde_yaml::Value, found: &mut BTreeSet<String>) {
    use serde_yaml::Value;
    match value {
        Value::Tagged(tagged) => {
            if let (Some("!Equals"), Value::Sequence(args)) =
                (Some(tagged.tag.to_string().as_str()), &tagged.value)
                && let [left, right] = args.as_slice()
                && right.as_str() == Some("0")
                && let Some(param) = ref_target(left)
            {
                found.insert(param.to_owned());
            }
            pinned_to_zero(&tagged.value, found);
        }
        Value::Sequence(items) => items.iter().for_each(|v| pinned_to_zero(v, found)),
        Value::Mapping(m) => m.values().for_each(|v| pinned_to_zero(v, found)),
        _ => {}
    }
}

/// A fault hook set by mistake outside the test stack would fail real
/// traffic on purpose: CloudFormation refuses such a deployment.
#[test]
fn test_only_parameters_are_refused_outside_the_local_stack() {
    let template = Template::load();
    let test_only: BTreeSet<String> = template.0["Parameters"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, p)| {
            p["Description"]
                .as_str()
                .is_some_and(|d| d.starts_with("TEST ONLY"))
        })
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    assert!(test_only.len() >= 3, "{test_only:?}");
    let rule = &template.0["Rules"]["FaultInjectionOnlyOnTheLocalStack"];
    assert_eq!(
        serde_yaml::to_string(&rule["RuleCondition"])
            .unwrap()
            .trim(),
        "!Not\n- !Equals\n  - !Ref Stage\n  - local",
        "the rule holds outside the local stage"
    );
    let mut pinned = BTreeSet::new();
    pinned_to_zero(&rule["Assertions"], &mut pinned);
    assert_eq!(pinned, test_only);
}

/// Issue 27.5: every limit the spec states is the one the code enforces,
/// from one constant each.
#[test]
fn the_specs_limits_are_the_codes() {
    use domain::catalog::{MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_STOCK};
    use domain::money::{MAX_AMOUNT, MAX_EXACT_IN_JSON};
    use domain::orders::{MAX_LINES, MAX_QUANTITY};
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml")).expect("openapi.yaml");
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).expect("openapi.yaml parses");
    let schemas = &spec["components"]["schemas"];
    let number = |v: &serde_yaml::Value| v.as_i64().unwrap_or_else(|| panic!("a number: {v:?}"));
    let draft = &schemas["ProductDraft"]["properties"];
    assert_eq!(number(&draft["price"]["maximum"]), MAX_AMOUNT);
    assert_eq!(number(&draft["stock"]["maximum"]), MAX_STOCK);
    assert_eq!(number(&draft["name"]["maxLength"]), MAX_NAME_CHARS as i64);
    assert_eq!(
        number(&draft["description"]["maxLength"]),
        MAX_DESCRIPTION_CHARS as i64
    );
    assert_eq!(
        number(&draft["category"]["maxLength"]),
        MAX_CATEGORY_CHARS as i64
    );
    let line = &schemas["LineRequest"]["properties"];
    assert_eq!(number(&line["quantity"]["maximum"]), MAX_QUANTITY);
    assert_eq!(number(&schemas["Money"]["maximum"]), MAX_EXACT_IN_JSON);
    let rules = &schemas["RebateRules"]["properties"];
    for field in ["minOrderAmount", "maxPerOrder", "maxPerUserPerMonth"] {
        assert_eq!(number(&rules[field]["maximum"]), MAX_AMOUNT, "{field}");
    }
    let campaigns = &rules["campaigns"];
    assert_eq!(
        number(&campaigns["maxItems"]),
        domain::rebates::MAX_CAMPAIGNS as i64
    );
    assert_eq!(
        number(&campaigns["items"]["properties"]["campaignId"]["maxLength"]),
        64
    );
    let create = &spec["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ["oneOf"][0]["properties"]["items"];
    assert_eq!(number(&create["maxItems"]), MAX_LINES as i64);
    let stock = &spec["paths"]["/products/{productId}/stock"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["newStock"];
    assert_eq!(number(&stock["maximum"]), MAX_STOCK);
    let stats = spec["paths"]["/admin/stats/sales"]["get"]["summary"]
        .as_str()
        .unwrap();
    let days = domain::sales::MAX_RANGE_DAYS;
    assert!(stats.contains(&format!("at most {days} days")), "{stats}");
}

/// Page tokens carry string key values only (adapters::db::decode_page_token
/// refuses any other type before it reaches DynamoDB): that holds while
/// every key attribute of every table and index is a string.
#[test]
fn every_key_attribute_is_a_string() {
    let template = Template::load();
    for (id, table) in template.resources_of_type("AWS::DynamoDB::Table") {
        for definition in table["Properties"]["AttributeDefinitions"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{id} has AttributeDefinitions"))
        {
            assert_eq!(
                definition["AttributeType"].as_str(),
                Some("S"),
                "{id}: {definition:?}"
            );
        }
    }
}

/// Issue 20.4: each function gets exactly the tables its IAM policy names,
/// and no other function's settings: no table variables in Globals.
#[test]
fn each_function_gets_the_tables_its_policy_names_and_no_others() {
    let template = Template::load();
    let globals = &template.0["Globals"]["Function"]["Environment"]["Variables"];
    let global_tables: Vec<&str> = globals
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str())
        .filter(|k| k.ends_with("_TABLE"))
        .collect();
    assert!(
        global_tables.is_empty(),
        "tables in Globals: {global_tables:?}"
    );
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let props = &function["Properties"];
        let given: std::collections::BTreeSet<String> = props["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| k.as_str().is_some_and(|k| k.ends_with("_TABLE")))
            .filter_map(|(_, v)| ref_target(v).map(str::to_owned))
            .collect();
        let policy = serde_yaml::to_string(&props["Policies"]).unwrap();
        let named: std::collections::BTreeSet<String> = template
            .resources_of_type("AWS::DynamoDB::Table")
            .map(|(table, _)| table.to_owned())
            .filter(|table| names(&policy, table))
            .collect();
        assert_eq!(
            given, named,
            "{id}: tables given vs tables its policy names"
        );
    }
}

/// Whether `text` names `table`'s ARN as a whole word (`EventsTable.Arn`
/// is not in `ProcessedEventsTable.Arn`). A function that only reads a
/// table's stream (`.StreamArn`, publish-events) is not given the table.
fn names(text: &str, table: &str) -> bool {
    let needle = format!("{table}.Arn");
    text.match_indices(&needle).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Issue 26.6: EventBridge may put into the delivery-failures queue only
/// for the schedules that name it as their dead-letter queue, each by its
/// rule's ARN (SAM names a function's Schedule event's rule
/// `<Function><Event>`), not for any rule of the account.
#[test]
fn only_our_schedules_may_dead_letter_into_the_failures_queue() {
    let template = Template::load();
    let mut schedules = BTreeSet::new();
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"].as_str() == Some("Schedule") {
                let dlq = &event["Properties"]["DeadLetterConfig"]["Arn"];
                assert!(
                    format!("{dlq:?}").contains("DeliveryFailuresQueue"),
                    "{id} {name:?}: a schedule without the failures queue as its DLQ"
                );
                schedules.insert(format!("{id}{}.Arn", name.as_str().unwrap()));
            }
        }
    }
    assert!(schedules.len() >= 5, "{schedules:?}");
    let policy =
        &template.0["Resources"]["DeliveryFailuresQueuePolicy"]["Properties"]["PolicyDocument"];
    let statement = policy["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("events.amazonaws.com"))
        .expect("a statement for EventBridge");
    let allowed: BTreeSet<String> = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_sequence()
        .expect("aws:SourceArn per rule")
        .iter()
        .map(|arn| match arn {
            serde_yaml::Value::Tagged(tagged) if tagged.tag == "!GetAtt" => {
                tagged.value.as_str().unwrap().to_owned()
            }
            other => panic!("not a rule's !GetAtt: {other:?}"),
        })
        .collect();
    assert_eq!(allowed, schedules);
}

/// Issue 26.6: the sandbox's signing secret is named to, and readable by,
/// only the function that verifies the sandbox's callbacks; starting,
/// refunding and closing sandbox payments sign nothing.
#[test]
fn only_the_sandbox_callback_reads_the_signing_secret() {
    let template = Template::load();
    let mut holders = Vec::new();
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let named = function["Properties"]["Environment"]["Variables"]
            .get("PAYMENT_SIGNING_SECRET_PARAM")
            .is_some();
        let policies = format!("{:?}", function["Properties"]["Policies"]);
        let readable = policies.contains("PaymentSigningSecretParameter");
        assert_eq!(
            named, readable,
            "{id}: named without the right to read, or the reverse"
        );
        if named {
            holders.push(id.to_owned());
        }
    }
    assert_eq!(holders, ["PaymentResultNotifyFunction"]);
}

/// Issue 26.5: on AWS one outbox record that always fails cannot stall its
/// shard (partial batch responses, bisection, bounded retries, an on-failure
/// destination, an alarm on the stream's age); the local stage keeps the
/// retry-until-published behaviour its emulator needs.
#[test]
fn the_outbox_stream_cannot_stall_on_aws_and_never_skips_locally() {
    let template = Template::load();
    let function = &template.0["Resources"]["PublishEventsFunction"];
    let outbox = &template.0["Resources"]["PublishEventsOutboxMapping"]["Properties"];
    assert_eq!(
        ref_target(&outbox["FunctionName"]),
        Some("PublishEventsFunction")
    );
    let text = |v: &serde_yaml::Value| format!("{v:?}");
    for (property, on_aws) in [
        ("FunctionResponseTypes", "ReportBatchItemFailures"),
        ("BisectBatchOnFunctionError", "true"),
        ("MaximumRetryAttempts", "OutboxRetryAttempts"),
        ("DestinationConfig", "DeliveryFailuresQueue"),
    ] {
        let value = text(&outbox[property]);
        assert!(
            value.contains("IsLocal") && value.contains(on_aws),
            "{property}: {value}"
        );
    }
    assert!(text(&outbox["MaximumRetryAttempts"]).contains("-1"));
    let reporting = text(&function["Properties"]["Environment"]["Variables"]["STREAM_FAILURES"]);
    assert!(
        reporting.contains("IsLocal")
            && reporting.contains("invocation")
            && reporting.contains("batch-item"),
        "{reporting}"
    );
    let alarm = &template.0["Resources"]["OutboxIteratorAgeAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"].as_str(), Some("IteratorAge"));
    assert_eq!(
        ref_target(&alarm["Dimensions"][0]["Value"]),
        Some("PublishEventsFunction")
    );
}

/// `(condition, parameter)` of `!If [Condition, !Ref Parameter, !Ref AWS::NoValue]`.
fn conditional_ref(value: &serde_yaml::Value) -> Option<(String, String)> {
    let serde_yaml::Value::Tagged(tagged) = value else {
        return None;
    };
    let parts = tagged.value.as_sequence()?;
    if tagged.tag != "If" || parts.len() != 3 || ref_target(&parts[2]) != Some("AWS::NoValue") {
        return None;
    }
    Some((
        parts[0].as_str()?.to_owned(),
        ref_target(&parts[1])?.to_owned(),
    ))
}

/// Issue 26.1 and 26.2: no function of the account can take the others'
/// concurrency. The provider callbacks, the outbox publisher, the queue
/// consumers and the sweeps each have concurrency reserved (a parameter per
/// kind); the functions behind the API can be capped (a parameter); the
/// queues' event sources never exceed their consumer's reservation; and the
/// defaults fit an account's default quota (1,000, of which 100 must stay
/// unreserved).
#[test]
fn every_function_has_its_kinds_reservation_and_the_defaults_fit_the_quota() {
    let template = Template::load();
    let default_of = |parameter: &str| {
        template.0["Parameters"][parameter]["Default"]
            .as_i64()
            .unwrap_or_else(|| panic!("{parameter} has a numeric default"))
    };
    // Functions fed by a stream mapping of their own (the outbox publisher).
    let streamed: BTreeSet<&str> = template
        .resources_of_type("AWS::Lambda::EventSourceMapping")
        .filter_map(|(_, m)| ref_target(&m["Properties"]["FunctionName"]))
        .collect();
    let mut reserved_by_default = 0;
    for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
        let events: Vec<&serde_yaml::Value> = function["Properties"]["Events"]
            .as_mapping()
            .map(|m| m.values().collect())
            .unwrap_or_default();
        let kinds: BTreeSet<&str> = events.iter().filter_map(|e| e["Type"].as_str()).collect();
        let open_route = events.iter().any(|e| {
            e["Type"] == "HttpApi" && e["Properties"]["Auth"]["Authorizer"].as_str() == Some("NONE")
        });
        let expected = if open_route {
            ("HasCallbackReservation", "CallbackReservedConcurrency")
        } else if kinds.contains("HttpApi") {
            ("HasApiConcurrencyCap", "ApiConcurrencyCap")
        } else if kinds.contains("SQS") || streamed.contains(id) {
            ("HasBackboneReservation", "BackboneReservedConcurrency")
        } else if kinds.contains("Schedule") {
            ("HasSweepReservation", "SweepReservedConcurrency")
        } else {
            panic!("{id}: a function of no known kind ({kinds:?})");
        };
        let reservation = conditional_ref(&function["Properties"]["ReservedConcurrentExecutions"]);
        assert_eq!(
            reservation,
            Some((expected.0.to_owned(), expected.1.to_owned())),
            "{id}: ReservedConcurrentExecutions"
        );
        reserved_by_default += default_of(expected.1);
        for event in events.iter().filter(|e| e["Type"] == "SQS") {
            let scaling = &event["Properties"]["ScalingConfig"];
            let serde_yaml::Value::Tagged(tagged) = scaling else {
                panic!("{id}: its queue's event source has no ScalingConfig");
            };
            let parts = tagged.value.as_sequence().unwrap();
            assert_eq!(parts[0].as_str(), Some("CapsConsumerEventSources"), "{id}");
            assert_eq!(
                ref_target(&parts[1]["MaximumConcurrency"]),
                Some("BackboneReservedConcurrency"),
                "{id}: the event source is capped at the consumer's reservation"
            );
        }
    }
    assert!(
        reserved_by_default <= 900,
        "the default reservations ({reserved_by_default}) leave less than 100 of a 1,000 quota"
    );
    for (parameter, condition) in [
        ("CallbackReservedConcurrency", "HasCallbackReservation"),
        ("BackboneReservedConcurrency", "HasBackboneReservation"),
        ("SweepReservedConcurrency", "HasSweepReservation"),
        ("ApiConcurrencyCap", "HasApiConcurrencyCap"),
    ] {
        assert!(
            !template.0["Conditions"][condition].is_null(),
            "{condition} ({parameter} > 0)"
        );
    }
}
