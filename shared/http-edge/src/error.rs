//! The one error type every HTTP handler returns, and how it becomes the
//! conventions' body: `{"error": {"code", "message", ...details}}`.

use adapters::db::DbError;
use domain::catalog::CatalogError;
use domain::error::{FieldError, KeyReused, RateLimited, StoreError};
use domain::notifications::verification::VerificationError;
use domain::orders::{OrderError, Shortage};
use domain::payments::{PaymentError, ProviderError, VerifyError};
use domain::rebates::RebateError;
use domain::refund_requests::RefundRequestError;
use domain::withdrawals::WithdrawalError;
use lambda_http::http::StatusCode;
use serde_json::{Map, Value};

/// An answer other than success, already classified for the client.
///
/// Handlers build these with the named constructors so that the status code
/// and the machine-readable `code` always agree across functions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields placed beside `code` and `message` (e.g. `productId`).
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header (429 and 503 only).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a detail field next to `code` and `message`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400 for a field that is present but wrong; `field` is named in the body.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("{field}: {}", message.into()),
        )
        .with("field", field)
    }

    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds {limit} bytes"),
        )
        .with("limitBytes", limit)
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type must be application/json, got {got:?}"),
        )
    }

    /// 415 for a body sent without any `Content-Type`.
    pub fn missing_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type is missing: send the body as application/json",
        )
    }

    /// 503: a dependency is slow or unavailable; the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500: our fault. The message stays generic; the cause goes to the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "an unexpected error occurred",
        )
    }

    /// The JSON body the conventions prescribe.
    pub fn body(&self) -> Value {
        let mut inner = Map::new();
        inner.insert("code".into(), Value::from(self.code));
        inner.insert("message".into(), Value::from(self.message.as_str()));
        for (k, v) in &self.details {
            inner.insert(k.clone(), v.clone());
        }
        serde_json::json!({ "error": inner })
    }
}

// ---------------------------------------------------------------- mapping
// Every context's errors become the conventions' answers here, and only
// here: one status and one `code` per kind of failure, whichever function
// meets it.

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::invalid_field(&err.field, err.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable");
                ApiError::unavailable("the database is temporarily unavailable, retry shortly")
            }
            StoreError::Busy(what) => ApiError::unavailable(what),
            StoreError::Failed(cause) => {
                tracing::error!(%cause, "database error");
                ApiError::internal()
            }
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        StoreError::from(err).into()
    }
}

impl From<RateLimited> for ApiError {
    /// 429 with the whole seconds until a token is back.
    fn from(err: RateLimited) -> Self {
        let seconds = err.retry_after_seconds();
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests; retry in {seconds} s"),
        )
        .with("retryAfterSeconds", seconds);
        error.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        error
    }
}

impl From<KeyReused> for ApiError {
    fn from(err: KeyReused) -> Self {
        ApiError::conflict("IDEMPOTENCY_KEY_REUSED", err.to_string())
    }
}

impl ApiError {
    pub fn order_not_found(order_id: &str) -> Self {
        ApiError::not_found(
            "ORDER_NOT_FOUND",
            format!("order {order_id:?} does not exist"),
        )
        .with("orderId", order_id)
    }

    pub fn product_not_found(product_id: &str) -> Self {
        ApiError::not_found(
            "PRODUCT_NOT_FOUND",
            format!("product {product_id:?} does not exist"),
        )
        .with("productId", product_id)
    }

    pub fn payment_not_found(payment_id: &str) -> Self {
        ApiError::not_found(
            "PAYMENT_NOT_FOUND",
            format!("payment {payment_id:?} does not exist"),
        )
        .with("paymentId", payment_id)
    }
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::Invalid(field) => field.into(),
            OrderError::NotFound(id) => ApiError::order_not_found(&id),
            OrderError::ProductNotFound(id) => ApiError::product_not_found(&id),
            OrderError::InsufficientStock(shortages) => insufficient_stock(&shortages),
            OrderError::RateLimited(limited) => limited.into(),
            OrderError::KeyReused(reused) => reused.into(),
            OrderError::Store(store) => store.into(),
        }
    }
}

/// 409 naming every short line; the first one's figures beside the message.
fn insufficient_stock(shortages: &[Shortage]) -> ApiError {
    let names: Vec<String> = shortages
        .iter()
        .map(|s| {
            format!(
                "{} (requested {}, available {})",
                s.product_id, s.requested, s.available
            )
        })
        .collect();
    let mut error = ApiError::conflict(
        "INSUFFICIENT_STOCK",
        format!("not enough stock for {}", names.join(", ")),
    );
    if let Some(first) = shortages.first() {
        error = error
            .with("productId", first.product_id.as_str())
            .with("available", first.available);
    }
    error.with(
        "shortages",
        serde_json::to_value(shortages).unwrap_or_default(),
    )
}

impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Unavailable(cause) => {
                tracing::warn!(%cause, "payment provider unavailable");
                ApiError::unavailable(
                    "the payment provider is temporarily unavailable, retry shortly",
                )
            }
            // The operator chose a provider without creating its
            // credentials: for a shopper, the method is unavailable.
            ProviderError::NotConfigured(cause) => {
                tracing::error!(%cause, "payment provider not configured");
                ApiError::unavailable("this payment method is not available right now")
            }
            ProviderError::Refused(cause) => ApiError::conflict(
                "PAYMENT_REFUSED",
                format!("the payment provider refused: {cause}"),
            ),
        }
    }
}

/// A provider callback that failed its checks: counted and logged, and
/// answered 401 (not signed by the provider) or 400 (signed, but not for this
/// merchant or not readable), changing nothing. A check we could not make
/// (the key is unreadable) is 503: the provider sends it again.
impl From<VerifyError> for ApiError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::BadSignature(cause) => {
                tracing::warn!(%cause, "payment callback rejected: signature");
                adapters::metrics::increment(adapters::metrics::Metric::InvalidSignatures);
                ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", cause)
            }
            VerifyError::Foreign(cause) => {
                tracing::warn!(%cause, "payment callback rejected: not ours");
                adapters::metrics::increment(adapters::metrics::Metric::InvalidSignatures);
                ApiError::new(StatusCode::BAD_REQUEST, "FOREIGN_NOTIFICATION", cause)
            }
            // Junk sent to the callback route of a provider this
            // deployment does not use: nothing here to verify with, and no
            // reason for a 5xx (it would page an operator).
            VerifyError::Provider(ProviderError::NotConfigured(cause)) => {
                ApiError::new(StatusCode::NOT_FOUND, "PROVIDER_NOT_CONFIGURED", cause)
            }
            VerifyError::Provider(err) => err.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::Invalid(field) => field.into(),
            PaymentError::NotFound(id) => ApiError::payment_not_found(&id),
            PaymentError::OrderNotFound(id) => ApiError::order_not_found(&id),
            PaymentError::OrderNotPayable {
                order_id,
                status,
                why,
            } => ApiError::conflict(
                "ORDER_NOT_PAYABLE",
                format!("order {order_id} is {}: {why}", status.as_str()),
            )
            .with("orderId", order_id)
            .with("orderStatus", status.as_str()),
            PaymentError::OrderChanged { order_id } => ApiError::conflict(
                "PAYMENT_CONFLICT",
                "the order changed while the payment was being created; retry",
            )
            .with("orderId", order_id),
            PaymentError::NotRefundable { payment_id, status } => ApiError::conflict(
                "PAYMENT_NOT_REFUNDABLE",
                format!("payment {payment_id} is {}", status.as_str()),
            ),
            PaymentError::Provider(provider) => provider.into(),
            PaymentError::RateLimited(limited) => limited.into(),
            PaymentError::KeyReused(reused) => reused.into(),
            PaymentError::Store(store) => store.into(),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Invalid(field) => field.into(),
            CatalogError::ProductNotFound(id) => ApiError::product_not_found(&id),
            CatalogError::Store(store) => store.into(),
        }
    }
}

impl From<RebateError> for ApiError {
    fn from(err: RebateError) -> Self {
        match err {
            RebateError::Invalid(field) => field.into(),
            RebateError::RulesNotSet => ApiError::not_found(
                "REBATE_RULES_NOT_SET",
                "no rebate rules have been set yet; PUT /admin/rebate-rules sets them",
            ),
            RebateError::RulesChanged { replaced } => ApiError::conflict(
                "REBATE_RULES_CHANGED",
                format!(
                    "the rules changed while this request replaced version {replaced}; read them again and retry"
                ),
            ),
            RebateError::Store(store) => store.into(),
        }
    }
}

impl From<RefundRequestError> for ApiError {
    fn from(err: RefundRequestError) -> Self {
        match err {
            RefundRequestError::Invalid(field) => field.into(),
            RefundRequestError::OrderNotFound(id) => ApiError::order_not_found(&id),
            RefundRequestError::NotFound(id) => ApiError::not_found(
                "REFUND_REQUEST_NOT_FOUND",
                format!("refund request {id:?} does not exist"),
            )
            .with("refundRequestId", id),
            RefundRequestError::NotRefundable {
                order_id,
                status,
                why,
            } => ApiError::conflict(
                "ORDER_NOT_REFUNDABLE",
                format!("order {order_id} is {}: {why}", status.as_str()),
            )
            .with("orderId", order_id)
            .with("orderStatus", status.as_str()),
            RefundRequestError::QuantityExceeded {
                index,
                product_id,
                claimable,
            } => ApiError::conflict(
                "REFUND_QUANTITY_EXCEEDED",
                format!(
                    "items[{index}].quantity: only {claimable} unit(s) of {product_id} are left to refund (other requests claim the rest)"
                ),
            )
            .with("field", format!("items[{index}].quantity"))
            .with("productId", product_id)
            .with("claimable", claimable),
            RefundRequestError::AlreadyDecided { id, status } => ApiError::conflict(
                "REFUND_REQUEST_DECIDED",
                format!("refund request {id} is {} already", status.as_str()),
            )
            .with("refundRequestId", id)
            .with("requestStatus", status.as_str()),
            RefundRequestError::Provider(provider) => provider.into(),
            RefundRequestError::KeyReused(reused) => reused.into(),
            RefundRequestError::Store(store) => store.into(),
        }
    }
}

impl From<WithdrawalError> for ApiError {
    fn from(err: WithdrawalError) -> Self {
        let message = err.to_string();
        match err {
            WithdrawalError::Invalid(field) => field.into(),
            WithdrawalError::NotFound(id) => {
                ApiError::not_found("WITHDRAWAL_NOT_FOUND", message).with("withdrawalId", id)
            }
            WithdrawalError::InsufficientBalance { available, .. } => {
                ApiError::conflict("INSUFFICIENT_BALANCE", message)
                    .with("field", "amount")
                    .with("available", available)
            }
            WithdrawalError::InFlight(id) => {
                ApiError::conflict("WITHDRAWAL_IN_FLIGHT", message).with("withdrawalId", id)
            }
            WithdrawalError::DailyCap { withdrawn, cap, .. } => {
                ApiError::conflict("DAILY_WITHDRAWAL_CAP", message)
                    .with("field", "amount")
                    .with("withdrawnToday", withdrawn)
                    .with("dailyCap", cap)
            }
            WithdrawalError::Forbidden { id, status, .. } => {
                ApiError::conflict("WITHDRAWAL_DECIDED", message)
                    .with("withdrawalId", id)
                    .with("withdrawalStatus", status.as_str())
            }
            WithdrawalError::KeyReused(reused) => reused.into(),
            WithdrawalError::Store(store) => store.into(),
        }
    }
}

impl From<VerificationError> for ApiError {
    fn from(err: VerificationError) -> Self {
        let retry_in = |code: &'static str, message: String, seconds: i64| {
            let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                .with("retryAfterSeconds", seconds);
            error.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
            error
        };
        match err {
            VerificationError::Invalid(field) => field.into(),
            VerificationError::NoDestination(contact) => ApiError::conflict(
                "NO_DESTINATION",
                format!(
                    "no {} is set: put one in PUT /me/preferences first",
                    contact.field()
                ),
            )
            .with("channel", contact.as_str()),
            VerificationError::TooSoon {
                retry_after_seconds,
            } => retry_in(
                "RATE_LIMITED",
                format!("a code was sent moments ago; ask again in {retry_after_seconds} s"),
                retry_after_seconds,
            ),
            VerificationError::DailyCapReached {
                contact,
                cap,
                retry_after_seconds,
            } => retry_in(
                "DAILY_LIMIT_REACHED",
                format!(
                    "the daily limit of {cap} messages by {} is reached; it resets at midnight UTC",
                    contact.as_str()
                ),
                retry_after_seconds,
            ),
            VerificationError::NoOpenCode(contact) => ApiError::conflict(
                "NO_OPEN_CODE",
                format!(
                    "no code is open for this {}: it expired, was used up, or the {} changed; \
                     ask for a new one with POST /me/contact-verifications",
                    contact.as_str(),
                    contact.field()
                ),
            )
            .with("channel", contact.as_str()),
            VerificationError::WrongCode { attempts_left } => ApiError::invalid_field(
                "code",
                format!("does not match the code sent; {attempts_left} attempt(s) left"),
            )
            .with("attemptsLeft", attempts_left),
            VerificationError::NotSent(cause) => {
                tracing::warn!(%cause, "verification code not sent");
                ApiError::unavailable("the code could not be sent; ask again in a minute")
            }
            VerificationError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_provider_is_404_on_its_callback_route_and_503_for_shoppers() {
        let callback = ApiError::from(VerifyError::Provider(ProviderError::NotConfigured(
            "stripe".into(),
        )));
        assert_eq!(callback.status, StatusCode::NOT_FOUND);
        assert_eq!(callback.code, "PROVIDER_NOT_CONFIGURED");
        let checkout = ApiError::from(ProviderError::NotConfigured("stripe".into()));
        assert_eq!(checkout.status, StatusCode::SERVICE_UNAVAILABLE);
        let outage = ApiError::from(VerifyError::Provider(ProviderError::Unavailable(
            "ssm".into(),
        )));
        assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ApiError::from(VerifyError::BadSignature("x".into())).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::from(VerifyError::Foreign("x".into())).status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn body_has_code_message_and_details() {
        let e = ApiError::not_found("PRODUCT_NOT_FOUND", "no product p1").with("productId", "p1");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "PRODUCT_NOT_FOUND", "message": "no product p1", "productId": "p1"}})
        );
    }

    #[test]
    fn invalid_field_names_the_field() {
        let e = ApiError::invalid_field("newStock", "must be >= 0");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("newStock"));
        assert_eq!(e.details["field"], "newStock");
    }

    #[test]
    fn insufficient_stock_names_products() {
        let e = ApiError::from(OrderError::InsufficientStock(vec![Shortage {
            product_id: "kettle".into(),
            requested: 3,
            available: 1,
        }]));
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.details["productId"], "kettle");
        assert_eq!(e.details["available"], 1);
        assert!(e.message.contains("kettle (requested 3, available 1)"));
    }

    #[test]
    fn limited_answers_429_with_retry_after_in_whole_seconds() {
        let e = ApiError::from(RateLimited { retry_after_ms: 1 });
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.details["retryAfterSeconds"], 1);
        let later = ApiError::from(RateLimited {
            retry_after_ms: 2500,
        });
        assert_eq!(later.retry_after, Some(3));
    }

    #[test]
    fn store_failures_are_503_when_a_retry_may_help_else_500() {
        let busy = ApiError::from(StoreError::Busy("too many concurrent orders"));
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.message, "too many concurrent orders");
        let down = ApiError::from(StoreError::Unavailable("timeout".into()));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!down.message.contains("timeout"), "causes stay in the log");
        let ours = ApiError::from(StoreError::Failed("corrupt".into()));
        assert_eq!(ours.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!ours.message.contains("corrupt"));
    }

    #[test]
    fn unavailable_carries_retry_after() {
        assert_eq!(ApiError::unavailable("x").retry_after, Some(1));
    }
}
