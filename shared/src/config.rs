//! Settings read once per container from the environment the template sets.

/// A required setting is absent: the deployment is broken, not the request.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingSetting(pub &'static str);

pub fn required(name: &'static str) -> Result<String, MissingSetting> {
    required_from(&|n| std::env::var(n).ok(), name)
}

fn required_from(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, MissingSetting> {
    lookup(name)
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
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the names through `lookup`, which tests build from the
    /// template's own environment wiring.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, MissingSetting> {
        Ok(Self {
            products: required_from(lookup, "PRODUCTS_TABLE")?,
        })
    }
}
