//! Everything the functions share: one place for the domain, its rules and
//! the plumbing around DynamoDB, API Gateway and Lambda.

pub mod auth;
pub mod backend;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod events;
pub mod faults;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod notifications;
pub mod order;
pub mod orders;
pub mod payment;
pub mod payments;
pub mod product;
pub mod ratelimit;
pub mod rebate;
pub mod rebates;
pub mod runtime;
pub mod sales;
pub mod secrets;
pub mod signature;

pub use auth::Caller;
pub use error::ApiError;
pub use http::ApiResult;
