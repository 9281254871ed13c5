//! The HTTPS client the provider connectors call through: hyper 1 and
//! rustls on ring (the stack the SDK clients already use), an explicit
//! timeout on every call, and the system's trust store (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` override it, which is how the local simulators' test CA
//! is trusted). Unlike the SDK's client it trusts more than AWS's roots:
//! the providers' certificates chain to DigiCert, GlobalSign and others.
//!
//! Built on the first call, not at init: most invocations of a payment
//! function never call a provider (a replayed request, a callback), and
//! reading the trust store is cold-start time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::payments::ProviderError;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

/// Longest answer read from a provider: theirs are a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How long one call may take, connection included. Providers answer in
/// well under a second; API Gateway gives the whole request 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> Result<&str, ProviderError> {
        std::str::from_utf8(&self.body)
            .map_err(|_| ProviderError::Unavailable("the provider's answer is not UTF-8".into()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct ProviderHttp {
    client: Arc<OnceCell<HttpsClient>>,
    timeout: Duration,
}

impl std::fmt::Debug for ProviderHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHttp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ProviderHttp {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

impl ProviderHttp {
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: Arc::new(OnceCell::new()),
            timeout,
        }
    }

    /// Sends `request`; a connection failure, a timeout or an unreadable
    /// answer is [`ProviderError::Unavailable`] (the outcome is unknown: the
    /// caller may retry only under the provider's idempotency key).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, ProviderError> {
        let client = self.client.get_or_try_init(|| async { build() }).await?;
        let target = format!("{} {}", request.method(), request.uri());
        let call = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| ProviderError::Unavailable(format!("{target}: {e}")))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    ProviderError::Unavailable(format!("{target}: reading the answer: {e}"))
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                ProviderError::Unavailable(format!("{target}: no answer within {:?}", self.timeout))
            })?
    }
}

fn build() -> Result<HttpsClient, ProviderError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(ProviderError::Unavailable(format!(
            "no trusted CA certificates found ({:?})",
            found.errors
        )));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ProviderError::Unavailable(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // http:// is allowed for the local simulators; the providers' own
    // endpoints (the defaults) are https://.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Why a provider call did not do what it asked.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The provider answered, authentically, with a business error.
    Business {
        provider: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    Provider(ProviderError),
}

impl CallError {
    /// Whether the provider answered with the business error `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        matches!(self, CallError::Business { code: c, .. } if c == code)
    }
}

impl From<ProviderError> for CallError {
    fn from(err: ProviderError) -> Self {
        Self::Provider(err)
    }
}

impl From<CallError> for ProviderError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Business {
                provider,
                code,
                message,
                ..
            } => ProviderError::Refused(format!("{provider} {code}: {message}")),
            CallError::Provider(err) => err,
        }
    }
}

/// Runs `call`, and once more after 200 ms when its outcome is unknown
/// (`Unavailable`) and `retry` allows it: only a call the provider
/// deduplicates (by `out_trade_no`, `out_refund_no`, `Idempotency-Key`, or
/// a read) may be sent twice.
pub(crate) async fn with_one_retry<T, Fut>(
    what: &str,
    retry: bool,
    mut call: impl FnMut() -> Fut,
) -> Result<T, CallError>
where
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    match call().await {
        Err(CallError::Provider(ProviderError::Unavailable(cause))) if retry => {
            tracing::warn!(what, %cause, "provider call failed; retrying once");
            tokio::time::sleep(Duration::from_millis(200)).await;
            call().await
        }
        other => other,
    }
}
