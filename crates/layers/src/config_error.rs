//! The one error every layer's configuration check returns.

/// A layer's configuration field is out of range.
///
/// Returned by the `validate` methods and constructors of each layer's configuration; it names
/// the layer and the field as in the builder method, so the fix is obvious.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {layer} configuration: `{field}` {problem}")]
pub struct ConfigError {
    pub(crate) layer: &'static str,
    pub(crate) field: &'static str,
    pub(crate) problem: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(
        layer: &'static str,
        field: &'static str,
        problem: &'static str,
    ) -> Self {
        ConfigError {
            layer,
            field,
            problem,
        }
    }

    /// The layer whose configuration is wrong (`"circuit breaker"`, `"retry"`).
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// The name of the offending field, as in the builder method (`half_open_trials`,
    /// `budget.ttl`, `connect.max_attempts`…).
    pub fn field(&self) -> &'static str {
        self.field
    }
}
