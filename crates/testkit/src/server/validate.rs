//! Request validation with Qdrant's wording: its gRPC services run `validator` rules generated
//! from `lib/api/build.rs` before anything else, and answer `INVALID_ARGUMENT` with
//! `Validation error in body: [field: message; …]` (`src/tonic/api/mod.rs`,
//! `lib/collection/src/operations/validation.rs`).

use std::fmt::Display;

use crate::storage::StorageError;

/// Collects the rule violations of one request, in field order.
#[derive(Debug, Default)]
pub(crate) struct Validation {
    errors: Vec<String>,
}

impl Validation {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `range(min = …)` on an integer field.
    pub(crate) fn min(&mut self, field: &str, value: u64, min: u64) -> &mut Self {
        if value < min {
            self.fail(field, value, format!("must be {min} or larger"));
        }
        self
    }

    /// `range(min = …)` on an optional integer field: unset passes.
    pub(crate) fn min_opt(&mut self, field: &str, value: Option<u64>, min: u64) -> &mut Self {
        if let Some(value) = value {
            self.min(field, value, min);
        }
        self
    }

    /// `length(min = 1)` on a string field.
    pub(crate) fn not_empty(&mut self, field: &str, value: &str) -> &mut Self {
        if value.is_empty() {
            self.errors.push(format!(
                "{field}: value \"\" invalid, must be at least 1 characters"
            ));
        }
        self
    }

    /// Records a broken rule on `field` whose value was `value`.
    pub(crate) fn fail_with(
        &mut self,
        field: &str,
        value: impl Display,
        rule: String,
    ) -> &mut Self {
        self.fail(field, value, rule);
        self
    }

    fn fail(&mut self, field: &str, value: impl Display, rule: String) {
        self.errors
            .push(format!("{field}: value {value} invalid, {rule}"));
    }

    /// `Ok` when every rule held, else Qdrant's `INVALID_ARGUMENT` answer.
    pub(crate) fn finish(&mut self) -> Result<(), StorageError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(StorageError::invalid_argument(format!(
            "Validation error in body: [{}]",
            self.errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_rule_reads_like_qdrant() {
        let err = Validation::new().min("limit", 0, 1).finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Validation error in body: [limit: value 0 invalid, must be 1 or larger]"
        );
        assert!(Validation::new().min("limit", 1, 1).finish().is_ok());
    }
}
