//! The HTTP edge: the only code that knows `lambda_http` and status codes.
//! [`ApiError`] and its mapping from every context's errors, request
//! parsing and answers, the caller's claims, idempotency's HTTP outcome and
//! page tokens. Handlers use this crate for HTTP and the stores in
//! `adapters` for everything else.

pub mod auth;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod orders;
pub mod page_token;

pub use auth::Caller;
pub use error::ApiError;
pub use http::ApiResult;
