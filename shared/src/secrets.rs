//! Secrets, read once per container from SSM Parameter Store (SecureString).
//! Never in the template, the repository or the logs.

use aws_config::SdkConfig;

use crate::config::MissingSetting;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Missing(#[from] MissingSetting),
    #[error("cannot read SSM parameter {name}: {cause}")]
    Unreadable { name: String, cause: String },
}

/// The payment provider's signing secret, named by `PAYMENT_SIGNING_SECRET_PARAM`.
pub async fn payment_signing_secret(config: &SdkConfig) -> Result<Vec<u8>, SecretError> {
    let name = crate::config::required("PAYMENT_SIGNING_SECRET_PARAM")?;
    let out = aws_sdk_ssm::Client::new(config)
        .get_parameter()
        .name(&name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable {
            name: name.clone(),
            cause: format!("{e:?}"),
        })?;
    let value = out
        .parameter
        .and_then(|p| p.value)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SecretError::Unreadable {
            name: name.clone(),
            cause: "the parameter is empty".into(),
        })?;
    Ok(value.into_bytes())
}

/// The sandbox provider as a deployed function uses it.
pub async fn sandbox_provider(
    config: &SdkConfig,
) -> Result<crate::payment::SandboxProvider, SecretError> {
    let secret = payment_signing_secret(config).await?;
    let base_url = std::env::var("PAYMENT_SANDBOX_URL")
        .unwrap_or_else(|_| "https://sandbox.pay.example".into());
    Ok(crate::payment::SandboxProvider::new(secret, base_url))
}
