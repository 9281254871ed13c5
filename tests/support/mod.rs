//! Support for the system tests: the template as data, DynamoDB Local with
//! tables made from the template's own definitions, API Gateway v2 events for
//! in-process handler calls, and an HTTP client for the deployed local stack.
//!
//! The services are started by `scripts/test`, which passes their addresses
//! in the environment; run the tests through it.

pub mod api;
pub mod cpu_share;
pub mod dynamo;
pub mod e2e;
pub mod refunds;
pub mod signed_callbacks;
pub mod simulator;
pub mod sqs;
pub mod template;
pub mod tls_terminator;

use std::path::PathBuf;

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A setting `scripts/test` provides; panics with the way to get it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through scripts/test, which starts the services they need")
    })
}
