//! Secrets, read from SSM Parameter Store (SecureString) on first use and kept
//! for the container's life. Never in the template, the repository or the logs.
//!
//! Fetched lazily rather than at init: cancel-order and the order-status
//! consumer need the payment secret only to refund, and a round trip to SSM
//! before the first `/next` is cold-start time every container pays
//! (`scripts/bench lambda`).

use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

use crate::config::MissingSetting;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Missing(#[from] MissingSetting),
    #[error("cannot read SSM parameter {name}: {cause}")]
    Unreadable { name: String, cause: String },
}

/// A secret value, known up front (tests, local tools) or read from an SSM
/// parameter the first time it is needed. Cheap to clone; clones share the
/// fetched value. A failed read is not cached: the next use tries again.
#[derive(Clone)]
pub struct Secret(Arc<Inner>);

struct Inner {
    source: Option<(SdkConfig, String)>,
    value: OnceCell<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the value.
        match &self.0.source {
            Some((_, name)) => write!(f, "Secret(ssm:{name})"),
            None => f.write_str("Secret(..)"),
        }
    }
}

impl Secret {
    pub fn known(value: impl Into<Vec<u8>>) -> Self {
        Self(Arc::new(Inner {
            source: None,
            value: OnceCell::new_with(Some(value.into())),
        }))
    }

    /// The SSM parameter `name`, read with decryption on first use.
    pub fn in_ssm(config: &SdkConfig, name: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            source: Some((config.clone(), name.into())),
            value: OnceCell::new(),
        }))
    }

    pub async fn get(&self) -> Result<&[u8], SecretError> {
        let value = self
            .0
            .value
            .get_or_try_init(|| async {
                let (config, name) = self
                    .0
                    .source
                    .as_ref()
                    .expect("a secret without a source is created with its value");
                read_parameter(config, name).await
            })
            .await?;
        Ok(value)
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
        .map_err(|e| unreadable(format!("{e:?}")))?;
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
    async fn a_known_secret_needs_no_source() {
        let secret = Secret::known("abc");
        assert_eq!(secret.get().await.unwrap(), b"abc");
        assert!(!format!("{secret:?}").contains("abc"));
    }
}
