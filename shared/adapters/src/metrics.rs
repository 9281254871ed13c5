//! Business and health metrics in CloudWatch Embedded Metric Format.
//!
//! Counters go through the `metrics` facade; `metrics_cloudwatch_embedded`
//! turns them into EMF documents on stdout, which CloudWatch Logs extracts
//! into metrics with no API call and no agent. One namespace (`METRICS_NAMESPACE`,
//! default `Shop`) and two dimensions on every figure: `service` and `function`.
//!
//! Each invocation's counters are flushed once it has answered, as one line
//! carrying the Lambda request id. Outside Lambda (tests, benchmarks) no
//! recorder is installed and counting costs nothing.

use std::sync::OnceLock;

use metrics_cloudwatch_embedded::Collector;

/// Every metric the system emits; the names are what dashboards and alarms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A new order was placed (replays of an idempotent request are not counted).
    OrdersCreated,
    /// createOrder met a product without enough stock, or lost a race for it.
    StockConflicts,
    /// A provider callback settled a payment as paid.
    PaymentsSucceeded,
    /// A provider callback settled a payment as failed.
    PaymentsFailed,
    /// A verified callback whose result cannot apply (a failure after the
    /// payment succeeded, or for a payment already expired or replaced): it
    /// changed nothing and is kept in the callbacks table for review.
    PaymentResultsIgnored,
    /// A provider callback was refused for its signature.
    InvalidSignatures,
    /// A rebate was credited to a user's ledger.
    RebatesCredited,
    /// An event left the outbox for the topic.
    EventsPublished,
    /// An outbox record no retry can publish was set aside (it stays in
    /// the events table; an alarm tells an operator).
    EventsSetAside,
    /// A consumer gave a message back to SQS for redelivery.
    ConsumerFailures,
    /// The first invocation of a new execution environment.
    ColdStart,
    /// An SMS or e-mail not sent because its user reached the channel's
    /// daily cap (a sign of abuse or of a loop).
    MessagesCapped,
    /// A provider reported that a refund it had accepted could not be paid
    /// (a closed card or account): an operator owes the buyer the money.
    RefundsFailed,
}

impl Metric {
    pub const ALL: [Metric; 13] = [
        Metric::OrdersCreated,
        Metric::StockConflicts,
        Metric::PaymentsSucceeded,
        Metric::PaymentsFailed,
        Metric::PaymentResultsIgnored,
        Metric::InvalidSignatures,
        Metric::RebatesCredited,
        Metric::EventsPublished,
        Metric::EventsSetAside,
        Metric::ConsumerFailures,
        Metric::ColdStart,
        Metric::MessagesCapped,
        Metric::RefundsFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::OrdersCreated => "OrdersCreated",
            Metric::StockConflicts => "StockConflicts",
            Metric::PaymentsSucceeded => "PaymentsSucceeded",
            Metric::PaymentsFailed => "PaymentsFailed",
            Metric::PaymentResultsIgnored => "PaymentResultsIgnored",
            Metric::InvalidSignatures => "InvalidSignatures",
            Metric::RebatesCredited => "RebatesCredited",
            Metric::EventsPublished => "EventsPublished",
            Metric::EventsSetAside => "EventsSetAside",
            Metric::ConsumerFailures => "ConsumerFailures",
            Metric::ColdStart => "ColdStart",
            Metric::MessagesCapped => "MessagesCapped",
            Metric::RefundsFailed => "RefundsFailed",
        }
    }
}

pub const DEFAULT_NAMESPACE: &str = "Shop";
pub const DEFAULT_SERVICE: &str = "shop";

/// Adds `n` to a counter of the current invocation.
pub fn count(metric: Metric, n: u64) {
    if n > 0 {
        metrics::counter!(metric.name()).increment(n);
    }
}

/// Adds one to a counter of the current invocation.
pub fn increment(metric: Metric) {
    count(metric, 1);
}

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the EMF recorder for this process and counts the cold start,
/// which the first invocation's flush then reports.
pub fn init() {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let namespace =
        std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| DEFAULT_NAMESPACE.to_owned());
    let service = std::env::var("SERVICE_NAME").unwrap_or_else(|_| DEFAULT_SERVICE.to_owned());
    match builder(namespace, service, function).init() {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            increment(Metric::ColdStart);
        }
        // Metrics must never stop a function from serving.
        Err(error) => tracing::warn!(%error, "metrics disabled"),
    }
}

/// The collector configuration every function uses.
pub fn builder(
    namespace: String,
    service: String,
    function: String,
) -> metrics_cloudwatch_embedded::Builder {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace)
        .with_dimension("service", service)
        .with_dimension("function", function)
}

/// Writes the invocation's counters to stdout as EMF, tagged with the
/// Lambda request id, and resets them.
pub fn flush(request_id: &str) {
    if let Some(collector) = COLLECTOR.get() {
        collector.set_property("requestId", request_id.to_owned());
        // stdout is Lambda's log stream; a line at a time so that lines from
        // the log subscriber never interleave with a document.
        let mut document = Vec::with_capacity(512);
        if collector.flush(&mut document).is_ok() && !document.is_empty() {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&document);
        }
    }
}

/// The rules CloudWatch applies to an EMF document (AWS's "Specification:
/// Embedded metric format"); a document breaking one is dropped silently.
pub fn check_emf(doc: &serde_json::Value) -> Result<(), String> {
    let aws = doc.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_u64()
        .ok_or("Timestamp is not epoch milliseconds")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .ok_or("no CloudWatchMetrics")?;
    for directive in directives {
        let namespace = directive["Namespace"].as_str().ok_or("no Namespace")?;
        if namespace.is_empty() || namespace.len() > 256 {
            return Err(format!("bad Namespace {namespace:?}"));
        }
        for set in directive["Dimensions"].as_array().ok_or("no Dimensions")? {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                doc[name]
                    .as_str()
                    .ok_or(format!("dimension {name} has no string value"))?;
            }
        }
        let metrics = directive["Metrics"].as_array().ok_or("no Metrics")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err("Metrics must hold 1 to 100 entries".into());
        }
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric has no Name")?;
            if !(doc[name].is_number() || doc[name].is_array()) {
                return Err(format!("metric {name} has no numeric value"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    // The only test that installs the process-wide recorder: the other
    // unit tests never reach a counting code path.
    #[test]
    fn counters_flush_as_valid_emf_with_service_function_and_request_id() {
        let collector = builder("Shop".into(), "shop".into(), "create-order".into())
            .init()
            .expect("recorder installs once");
        let _ = COLLECTOR.set(collector);
        increment(Metric::OrdersCreated);
        increment(Metric::OrdersCreated);
        count(Metric::EventsPublished, 3);
        count(Metric::ConsumerFailures, 0);
        collector.set_property("requestId", "req-1");
        let mut out = Vec::new();
        collector.flush(&mut out).unwrap();

        let text = String::from_utf8(out).unwrap();
        let docs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 1, "one document per flush: {text}");
        let doc = &docs[0];
        check_emf(doc).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shop");
        assert_eq!(
            directive["Dimensions"][0],
            serde_json::json!(["service", "function"])
        );
        assert_eq!(doc["service"], "shop");
        assert_eq!(doc["function"], "create-order");
        assert_eq!(doc["requestId"], "req-1");
        assert_eq!(doc["OrdersCreated"], 2);
        assert_eq!(doc["EventsPublished"], 3);
        assert!(
            doc.get("ConsumerFailures").is_none(),
            "zero counts are left out"
        );

        // Counters reset after a flush: the next invocation starts at zero.
        let mut again = Vec::new();
        collector.flush(&mut again).unwrap();
        assert!(again.is_empty(), "{}", String::from_utf8_lossy(&again));
    }

    #[test]
    fn the_checker_refuses_what_cloudwatch_would_drop() {
        let good = serde_json::json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{
            "Namespace": "Shop", "Dimensions": [["function"]], "Metrics": [{"Name": "X"}]}]},
            "function": "f", "X": 1});
        check_emf(&good).unwrap();
        let mut no_value = good.clone();
        no_value.as_object_mut().unwrap().remove("X");
        assert!(check_emf(&no_value).is_err());
        let mut no_dimension = good.clone();
        no_dimension.as_object_mut().unwrap().remove("function");
        assert!(check_emf(&no_dimension).is_err());
        let mut no_namespace = good;
        no_namespace["_aws"]["CloudWatchMetrics"][0]["Namespace"] = Value::Null;
        assert!(check_emf(&no_namespace).is_err());
    }

    #[test]
    fn metric_names_are_distinct() {
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }
}
