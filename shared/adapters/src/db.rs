//! DynamoDB plumbing shared by every store: client construction with
//! explicit timeouts, and error classification.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

pub type Item = HashMap<String, AttributeValue>;

/// Every SDK call must end well inside the function timeout (10 s in the
/// template) so that a stalled dependency becomes a 503 the client can retry,
/// not a Lambda timeout.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_ATTEMPTS: u32 = 3;

/// Loads the AWS configuration from the environment (credentials, region and
/// `AWS_ENDPOINT_URL[_DYNAMODB]` for local stacks) with our timeouts.
pub async fn sdk_config() -> SdkConfig {
    let mut loader = config_loader();
    // Lambda hands a function its role's credentials and its region as
    // environment variables. Reading them directly spares every cold start
    // the default chains (profile files, web identity with its own STS
    // client, container and instance metadata), which it would build only
    // to find the environment first. Without them (a developer's shell with
    // a profile), the default chains as usual.
    if ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .all(|var| std::env::var_os(var).is_some())
    {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    if ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|var| std::env::var_os(var).is_some())
    {
        loader = loader.region(EnvironmentVariableRegionProvider::new());
    }
    loader.load().await
}

/// The SDK's defaults with our HTTPS client, timeouts and retries: what
/// every production client starts from (tests that need a client behaving
/// as production's do start here too, then point it elsewhere).
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
}

/// The CAs behind every AWS endpoint's certificate (Amazon Trust Services:
/// Amazon Root CA 1–4 and their Starfield cross-signers).
const AWS_ROOT_CAS: &[u8] = include_bytes!("aws-root-cas.pem");

/// The SDK's HTTPS client, trusting only the AWS root CAs: the functions talk
/// to AWS endpoints alone, and loading the system's whole store (about 150
/// files) was most of a cold start (7.5 → 3.0 ms spawn to first /next).
/// Set `SSL_CERT_FILE` or `SSL_CERT_DIR` to trust that store instead (an
/// endpoint signed elsewhere, e.g. a TLS proxy). Note that rustup sets both
/// for the programs it starts, so `cargo run` and `cargo test` use the
/// system's store; Lambda sets neither.
pub fn https_client() -> SharedHttpClient {
    let system_store = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    https_client_trusting(if system_store {
        TrustStore::default()
    } else {
        aws_trust_store()
    })
}

fn aws_trust_store() -> TrustStore {
    TrustStore::empty().with_pem_certificate(AWS_ROOT_CAS)
}

/// rustls on ring rather than the SDK's default aws-lc-rs: 0.75 MiB less in
/// every binary (get-product-info 6.12 → 5.37 MiB, 3k fewer load-time
/// relocations) and no large C library to build for two architectures. It
/// has the TLS 1.2/1.3 suites AWS endpoints offer; what it lacks is the
/// post-quantum key exchange that aws-lc-rs would prefer.
fn https_client_trusting(trust: TrustStore) -> SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context from a trust store alone");
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    SharedHttpClient::new(ConnectorOnFirstRequest(client))
}

/// The SDK's HTTP client without its eager connector. The hyper client
/// builds a TLS connector when a service client is created, only to warm
/// the system trust store, and drops it; the first request builds the one
/// it keeps. Our trust store is in the binary, so that first build was
/// pure cold-start cost (TLS context, PEM parsing, crypto CPU detection).
#[derive(Debug)]
struct ConnectorOnFirstRequest(SharedHttpClient);

impl HttpClient for ConnectorOnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// What went wrong talking to DynamoDB, in the terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A `ConditionExpression` did not hold; the caller maps it to 404/409.
    #[error("conditional check failed")]
    ConditionFailed,
    /// Throttling, timeouts, network or server faults: worth retrying later.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// A stored item does not have the shape we expect.
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    #[error("dynamodb error: {0}")]
    Other(String),
}

const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    // A global table's concurrent write in another region (issue 26.6).
    "ReplicatedWriteConflictException",
];

impl<E, R> From<SdkError<E, R>> for DbError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn from(err: SdkError<E, R>) -> Self {
        match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => DbError::Unavailable(format!("{err:?}")),
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("");
                if code == "ConditionalCheckFailedException" {
                    DbError::ConditionFailed
                } else if RETRYABLE_CODES.contains(&code) {
                    DbError::Unavailable(format!(
                        "{code}: {}",
                        service.err().message().unwrap_or("")
                    ))
                } else {
                    DbError::Other(format!("{code}: {}", service.err().message().unwrap_or("")))
                }
            }
            _ => DbError::Other(format!("{err:?}")),
        }
    }
}

impl From<serde_json::Error> for DbError {
    fn from(err: serde_json::Error) -> Self {
        DbError::Corrupt(err.to_string())
    }
}

/// What the domain learns of a database failure: whether a retry may help.
impl From<DbError> for domain::error::StoreError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<serde_dynamo::Error> for DbError {
    fn from(err: serde_dynamo::Error) -> Self {
        DbError::Corrupt(err.to_string())
    }
}

/// The item under a single-attribute key, read strongly consistent (a read
/// that follows a write must see it) and deserialized.
/// Whether a read must see every write acknowledged before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A user reading what they just wrote (their order, their payment).
    Consistent,
    /// May lag a write by about a second, at half the read capacity and
    /// latency (public catalog reads, which clients cache for seconds anyway).
    Eventual,
}

pub async fn get_item<T: serde::de::DeserializeOwned>(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key_name: &str,
    key: &str,
    read: Read,
) -> Result<Option<T>, DbError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(key_name, s(key))
        .consistent_read(read == Read::Consistent)
        .send()
        .await?;
    Ok(out.item.map(serde_dynamo::from_item).transpose()?)
}

/// A number attribute of an item, if it has one.
pub fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// One `BatchGetItem` over one or more tables, repeated (with backoff) only
/// for the keys DynamoDB leaves unprocessed under throttling. The items found,
/// by table.
pub async fn batch_get(
    client: &aws_sdk_dynamodb::Client,
    request: std::collections::HashMap<String, aws_sdk_dynamodb::types::KeysAndAttributes>,
) -> Result<std::collections::HashMap<String, Vec<Item>>, DbError> {
    const MAX_ATTEMPTS: u32 = 5;
    let mut found: std::collections::HashMap<String, Vec<Item>> = Default::default();
    let mut pending = Some(request);
    let mut attempt = 0;
    while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
        attempt += 1;
        if attempt > 1 {
            if attempt > MAX_ATTEMPTS {
                return Err(DbError::Unavailable("reads are being throttled".into()));
            }
            backoff(attempt).await;
        }
        let out = client
            .batch_get_item()
            .set_request_items(Some(request))
            .send()
            .await?;
        for (table, items) in out.responses.unwrap_or_default() {
            found.entry(table).or_default().extend(items);
        }
        pending = out.unprocessed_keys;
    }
    Ok(found)
}

/// A string attribute.
pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A number attribute.
pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A request builder's error (a missing required field: our bug).
pub fn build_err(e: impl std::fmt::Display) -> DbError {
    DbError::Other(e.to_string())
}

/// How a transaction ended, short of an error.
#[derive(Debug)]
pub enum Transact {
    Committed,
    /// Cancelled by a condition or a conflicting transaction: one reason per
    /// item, in the order they were sent.
    Cancelled(Vec<CancellationReason>),
}

/// Runs one `TransactWriteItems`. A fresh `ClientRequestToken` makes the
/// SDK's own retries of this call idempotent (a retry after a commit whose
/// answer was lost succeeds instead of failing its conditions).
pub async fn transact(
    client: &aws_sdk_dynamodb::Client,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
) -> Result<Transact, DbError> {
    let result = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .client_request_token(domain::ids::new_id())
        .send()
        .await;
    match result {
        Ok(_) => Ok(Transact::Committed),
        Err(err) => match cancellation_reasons(&err) {
            Some(reasons) => Ok(Transact::Cancelled(reasons.to_vec())),
            None => Err(err.into()),
        },
    }
}

/// Why a `TransactWriteItems` was cancelled, if that is what happened.
fn cancellation_reasons(
    err: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> Option<&[CancellationReason]> {
    match err {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(e) => {
                Some(e.cancellation_reasons())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Jittered exponential backoff for a transaction that lost a race.
pub async fn backoff(attempt: u32) {
    let base = 4u64 << attempt.min(6);
    let jitter = u64::from(ulid::Ulid::new().random() as u16) % base.max(1);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

/// Whether this item's condition did not hold.
pub fn condition_failed(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

/// Whether another transaction on the same items got in the way.
pub fn conflicted(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_conflicts_are_worth_a_retry() {
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        for code in ["ThrottlingException", "ReplicatedWriteConflictException"] {
            let meta = aws_sdk_dynamodb::error::ErrorMetadata::builder()
                .code(code)
                .build();
            let err: SdkError<GetItemError, ()> =
                SdkError::service_error(GetItemError::generic(meta), ());
            assert!(
                matches!(DbError::from(err), DbError::Unavailable(_)),
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn the_trust_store_holds_the_six_aws_root_certificates() {
        use base64::Engine;
        let text = std::str::from_utf8(AWS_ROOT_CAS).unwrap();
        let blocks: Vec<&str> = text
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|b| b.split("-----END CERTIFICATE-----").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 6);
        for block in blocks {
            let b64: String = block.split_whitespace().collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(der[0], 0x30, "a DER certificate starts with a SEQUENCE");
        }
        // rustls parses them when a connection's TLS handshake starts (a
        // certificate it cannot parse panics there): a listener that hangs
        // up on every connection makes the client get that far, then fail.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
            }
        });
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(format!("https://127.0.0.1:{port}"))
            .retry_config(RetryConfig::disabled())
            .http_client(https_client_trusting(aws_trust_store()))
            .build();
        let sent = aws_sdk_dynamodb::Client::from_conf(config)
            .list_tables()
            .send()
            .await;
        let failure = sent.expect_err("the listener hangs up");
        assert!(
            matches!(
                failure,
                aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)
            ),
            "{failure:?}"
        );
    }
}
