//! Settings read once per container from the environment the template sets.

/// A required setting is absent: the deployment is broken, not the request.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingSetting(pub &'static str);

pub fn required(name: &'static str) -> Result<String, MissingSetting> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(MissingSetting(name))
}

/// Table names, as the template passes them to every function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub products: String,
}

impl Tables {
    pub fn from_env() -> Result<Self, MissingSetting> {
        Ok(Self {
            products: required("PRODUCTS_TABLE")?,
        })
    }
}
