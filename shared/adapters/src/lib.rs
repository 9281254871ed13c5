//! Adapters: what the domain needs from the world, on AWS. A store per
//! context on DynamoDB (catalog, orders, payments, rebates, notifications,
//! sales), the transactional outbox, SDK and TLS setup, settings and
//! secrets, payment providers, the SNS channels, the queue consumer's loop,
//! metrics and test-only faults. Stores answer their context's errors
//! (`domain::*::*Error`) or, for plain reads, [`db::DbError`]; none knows
//! HTTP.

pub mod backend;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod db;
pub mod due_index;
pub mod faults;
pub mod idempotency;
pub mod metrics;
pub mod notifications;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod ratelimit;
pub mod rebates;
pub mod refund_requests;
pub mod runtime;
pub mod sales;
#[cfg(feature = "ssm")]
pub mod secrets;
pub mod stock_shards;
pub mod withdrawals;
