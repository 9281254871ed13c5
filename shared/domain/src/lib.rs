//! The shop's domain, free of AWS, Lambda and HTTP (its dependencies say
//! so): what an order, a payment, a product, a rebate and a notification
//! are, the state machines and rules they follow, how input is validated,
//! and each context's errors. Stores live in `adapters`; status codes in
//! `http-edge`.

pub mod catalog;
pub mod clock;
pub mod decisions;
pub mod error;
pub mod events;
pub mod ids;
pub mod money;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod rebates;
pub mod refund_requests;
pub mod sales;
pub mod stock_shards;
pub mod withdrawals;
