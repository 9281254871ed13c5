//! The layers hold because the dependency graph says so (issue 20.1): the
//! domain knows no AWS, Lambda or HTTP; the adapters know no HTTP; only the
//! HTTP edge and the API functions know `lambda_http`; and each function
//! compiles only the SDK clients it uses. Read from `cargo tree`, which
//! resolves each package's features as a build of that package alone would.

use std::collections::BTreeSet;
use std::process::Command;

/// The packages `package` is built with (normal dependencies, itself included).
fn dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn functions() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("functions/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_domain_knows_no_aws_lambda_or_http() {
    let deps = dependencies("domain");
    let foreign: Vec<&String> = deps
        .iter()
        .filter(|d| {
            ["aws", "lambda", "http", "hyper", "tokio", "adapters"]
                .iter()
                .any(|p| d.starts_with(p))
        })
        .collect();
    assert!(foreign.is_empty(), "domain depends on {foreign:?}");
}

#[test]
fn the_adapters_know_no_http() {
    let deps = dependencies("adapters");
    for edge in ["lambda_http", "http-edge"] {
        assert!(!deps.contains(edge), "adapters depends on {edge}");
    }
    assert!(deps.contains("domain"));
}

#[test]
fn only_api_functions_know_http_and_each_compiles_only_its_clients() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let sends_sms_or_publishes = ["notifier", "publish-events", "start-contact-verification"];
    let reads_secrets = [
        "alipay-notify",
        "cancel-order",
        "decide-refund-request",
        "initiate-payment",
        "payment-result-notify",
        "pay-withdrawals",
        "reconcile-payments",
        "stripe-notify",
        "update-order-status",
        "wechatpay-notify",
    ];
    let talks_to_providers = [
        "alipay-notify",
        "cancel-order",
        "decide-refund-request",
        "initiate-payment",
        "pay-withdrawals",
        "reconcile-payments",
        "stripe-notify",
        "update-order-status",
        "wechatpay-notify",
    ];
    for function in functions() {
        let deps = dependencies(&function);
        let api = http_function(&template, &function);
        assert_eq!(
            deps.contains("lambda_http") || deps.contains("http-edge"),
            api,
            "{function}: HTTP only in functions behind the API"
        );
        assert_eq!(
            deps.contains("aws-sdk-sns"),
            sends_sms_or_publishes.contains(&function.as_str()),
            "{function}: SNS client"
        );
        assert_eq!(
            deps.contains("aws-sdk-ssm"),
            reads_secrets.contains(&function.as_str()),
            "{function}: SSM client"
        );
        // RSA, X.509 and the providers' HTTPS client: only where a real
        // provider is called or verified.
        assert_eq!(
            deps.contains("x509-cert"),
            talks_to_providers.contains(&function.as_str()),
            "{function}: provider protocols"
        );
    }
}

/// Whether the template's resource that builds `function` has an `HttpApi`
/// event.
fn http_function(template: &str, function: &str) -> bool {
    let binary = format!("Binary: {function}");
    let lines: Vec<&str> = template.lines().collect();
    let Some(at) = lines.iter().position(|l| l.trim() == binary) else {
        panic!("template.yaml builds no {function}");
    };
    // The resource runs until the next top-level resource (two-space indent).
    lines[at..]
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with("  ") || l.starts_with("   "))
        .any(|l| l.trim() == "Type: HttpApi")
}
