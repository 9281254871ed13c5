//! Secrets, read from SSM Parameter Store (SecureString) on first use and kept
//! (re-read once when a provider's signature fails with an old copy). Never
//! in the template, the repository or the logs.
//!
//! Fetched lazily rather than at init: cancel-order and the order-status
//! consumer need the payment secret only to refund, and a round trip to SSM
//! before the first `/next` is cold-start time every container pays
//! (`scripts/bench lambda`).

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::config::MissingSetting;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Missing(#[from] MissingSetting),
    #[error("cannot read SSM parameter {name}: {cause}")]
    Unreadable { name: String, cause: String },
    /// The parameter does not exist: nobody configured it (a definite
    /// answer, unlike an SSM outage).
    #[error("SSM parameter {name} does not exist")]
    NotFound { name: String },
}

impl SecretError {
    /// What a payment provider's missing or unreadable credentials mean to
    /// its callers: not configured here, or unavailable for now.
    pub fn for_provider(self, provider: &str) -> domain::payments::ProviderError {
        use domain::payments::ProviderError;
        match self {
            SecretError::NotFound { name } => {
                tracing::warn!(
                    provider,
                    parameter = name,
                    "payment provider not configured"
                );
                ProviderError::NotConfigured(format!("{provider}: no credentials at {name}"))
            }
            err => {
                tracing::error!(provider, %err, "payment provider credentials unavailable");
                ProviderError::Unavailable(format!("{provider} credentials: {err}"))
            }
        }
    }
}

/// A provider's credentials (keys, ids, webhook secrets), parsed from one
/// SSM parameter on first use and kept; [`Credentials::refresh`] re-reads
/// them when a provider's signature fails to verify with a copy older than
/// [`REFRESH_AFTER`], so a key rotated at the provider and in SSM is picked
/// up without a redeploy, while a flood of forged callbacks cannot make
/// every request a round trip to SSM.
pub struct Credentials<T> {
    source: Source,
    parse: fn(&[u8]) -> Result<T, String>,
    cached: tokio::sync::Mutex<Option<(Arc<T>, std::time::Instant)>>,
}

enum Source {
    Known(Vec<u8>),
    Ssm(Box<SdkConfig>, String),
}

/// How old a cached copy must be before a failed verification re-reads it.
pub const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

impl<T> std::fmt::Debug for Credentials<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Ssm(_, name) => write!(f, "Credentials(ssm:{name})"),
            Source::Known(_) => f.write_str("Credentials(..)"),
        }
    }
}

impl<T> Credentials<T> {
    pub fn known(value: impl Into<Vec<u8>>, parse: fn(&[u8]) -> Result<T, String>) -> Self {
        Self::with_source(Source::Known(value.into()), parse)
    }

    pub fn in_ssm(
        config: &SdkConfig,
        name: impl Into<String>,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Self {
        Self::with_source(Source::Ssm(Box::new(config.clone()), name.into()), parse)
    }

    fn with_source(source: Source, parse: fn(&[u8]) -> Result<T, String>) -> Self {
        Self {
            source,
            parse,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached credentials, read on first use.
    pub async fn get(&self) -> Result<Arc<T>, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((value, _)) = cached.as_ref() {
            return Ok(value.clone());
        }
        let value = Arc::new(self.read().await?);
        *cached = Some((value.clone(), std::time::Instant::now()));
        Ok(value)
    }

    /// Newer credentials if the cached copy is older than [`REFRESH_AFTER`]
    /// (`None`: it is recent, nothing was read).
    pub async fn refresh(&self) -> Result<Option<Arc<T>>, SecretError> {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < REFRESH_AFTER)
        {
            return Ok(None);
        }
        let value = Arc::new(self.read().await?);
        *cached = Some((value.clone(), std::time::Instant::now()));
        tracing::info!(credentials = ?self, "credentials re-read after a failed verification");
        Ok(Some(value))
    }

    async fn read(&self) -> Result<T, SecretError> {
        let (name, bytes) = match &self.source {
            Source::Known(bytes) => ("(known)".to_owned(), bytes.clone()),
            Source::Ssm(config, name) => (name.clone(), read_parameter(config, name).await?),
        };
        (self.parse)(&bytes).map_err(|cause| SecretError::Unreadable { name, cause })
    }
}

async fn read_parameter(config: &SdkConfig, name: &str) -> Result<Vec<u8>, SecretError> {
    let unreadable = |cause: String| SecretError::Unreadable {
        name: name.to_owned(),
        cause,
    };
    let out = aws_sdk_ssm::Client::new(config)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|e| e.is_parameter_not_found())
            {
                SecretError::NotFound {
                    name: name.to_owned(),
                }
            } else {
                unreadable(format!("{e:?}"))
            }
        })?;
    let value = out
        .parameter
        .and_then(|p| p.value)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| unreadable("the parameter is empty".into()))?;
    tracing::info!(parameter = name, "secret read from SSM");
    Ok(value.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn known_credentials_parse_once_and_refresh_only_when_old() {
        let credentials = Credentials::known("7", |b| {
            std::str::from_utf8(b)
                .unwrap()
                .parse::<u32>()
                .map_err(|e| e.to_string())
        });
        assert_eq!(*credentials.get().await.unwrap(), 7);
        let secret = Credentials::known("abc", |b| Ok(b.to_vec()));
        assert_eq!(*secret.get().await.unwrap(), b"abc");
        assert!(
            !format!("{secret:?}").contains("abc"),
            "Debug must not print the value"
        );
        // Just read: a failed verification does not re-read.
        assert!(credentials.refresh().await.unwrap().is_none());
        let broken = Credentials::known("x", |b| {
            std::str::from_utf8(b)
                .unwrap()
                .parse::<u32>()
                .map_err(|e| e.to_string())
        });
        assert!(matches!(
            broken.get().await,
            Err(SecretError::Unreadable { .. })
        ));
    }
}
