//! API keys, checked as Qdrant 1.18 checks them (`src/common/auth/mod.rs`,
//! `src/tonic/auth.rs`, `lib/storage/src/rbac/mod.rs`):
//!
//! - the key is read from the `api-key` header, or else from `authorization: Bearer <key>`
//!   (`Bearer ` spelled exactly so); an `api-key` header wins even when it is wrong;
//! - no key: `UNAUTHENTICATED` "Must provide an API key or an Authorization bearer token";
//! - a key that is neither configured key: `UNAUTHENTICATED` "Invalid API key or JWT";
//! - the read-only key on a write: `PERMISSION_DENIED` "Forbidden: Global manage access is
//!   required", except that the point writes Qdrant runs through its strict-mode check first
//!   (upsert, delete, vectors, payload, batch, create field index, create vector name) answer
//!   `NOT_FOUND` for a missing collection first;
//! - `qdrant.Qdrant/HealthCheck` needs no key.
//!
//! Keys are kept only as SHA-256 digests and compared in constant time, so neither the key nor
//! how much of it a caller guessed right leaks through timing, `Debug` output or errors.

use std::fmt;

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::faults::Rpc;

/// Qdrant's API key header.
const API_KEY_HEADER: &str = "api-key";

/// A configured API key: its SHA-256 digest only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey([u8; 32]);

impl ApiKey {
    pub(crate) fn new(key: &str) -> Self {
        ApiKey(Sha256::digest(key.as_bytes()).into())
    }

    /// Whether `presented` is this key, in time independent of where they differ.
    fn matches(&self, presented: &[u8; 32]) -> bool {
        let difference = self
            .0
            .iter()
            .zip(presented)
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The keys a server accepts. With none configured, every call passes.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApiKeys {
    pub(crate) read_write: Option<ApiKey>,
    pub(crate) read_only: Option<ApiKey>,
}

/// What a valid key allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadWrite,
    ReadOnly,
}

impl ApiKeys {
    /// Whether any key is configured, i.e. calls must carry one.
    pub(crate) fn is_enabled(&self) -> bool {
        self.read_write.is_some() || self.read_only.is_some()
    }

    /// The access the call's key grants, or the status Qdrant answers a call without a valid
    /// key. Health checks pass without a key.
    pub(crate) fn check(&self, rpc: Rpc, metadata: &MetadataMap) -> Result<Access, Status> {
        if !self.is_enabled() || rpc == Rpc::HealthCheck {
            return Ok(Access::ReadWrite);
        }
        let header = |name: &str| metadata.get(name).and_then(|value| value.to_str().ok());
        let Some(key) = header(API_KEY_HEADER)
            .or_else(|| header("authorization").and_then(|value| value.strip_prefix("Bearer ")))
        else {
            return Err(Status::unauthenticated(
                "Must provide an API key or an Authorization bearer token",
            ));
        };
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Both comparisons always run, so the time does not tell which key matched.
        let read_write = self
            .read_write
            .as_ref()
            .is_some_and(|key| key.matches(&presented));
        let read_only = self
            .read_only
            .as_ref()
            .is_some_and(|key| key.matches(&presented));
        if read_write {
            Ok(Access::ReadWrite)
        } else if read_only {
            Ok(Access::ReadOnly)
        } else {
            Err(Status::unauthenticated("Invalid API key or JWT"))
        }
    }
}

/// Qdrant's answer to a write made with the read-only key.
pub(crate) fn forbidden() -> Status {
    Status::permission_denied("Forbidden: Global manage access is required")
}

/// Whether Qdrant looks the collection up (its strict-mode check) before checking write
/// access, so that a missing collection answers `NOT_FOUND` even to the read-only key
/// (`src/common/update.rs`: `do_upsert_points` and friends, `do_create_index`,
/// `do_create_vector_name`).
pub(crate) fn looks_up_collection_first(rpc: Rpc) -> bool {
    matches!(
        rpc,
        Rpc::Upsert
            | Rpc::DeletePoints
            | Rpc::UpdateVectors
            | Rpc::DeleteVectors
            | Rpc::SetPayload
            | Rpc::OverwritePayload
            | Rpc::DeletePayload
            | Rpc::ClearPayload
            | Rpc::UpdateBatch
            | Rpc::CreateFieldIndex
            | Rpc::CreateVectorName
    )
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            read_write: Some(ApiKey::new("secret-rw")),
            read_only: Some(ApiKey::new("secret-ro")),
        }
    }

    fn with(headers: &[(&'static str, &str)]) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            metadata.insert(*name, value.parse().unwrap());
        }
        metadata
    }

    fn code(result: Result<Access, Status>) -> Result<Access, (Code, String)> {
        result.map_err(|status| (status.code(), status.message().to_owned()))
    }

    #[test]
    fn keys_come_from_api_key_or_a_bearer_token() {
        let keys = keys();
        let check =
            |headers: &[(&'static str, &str)]| code(keys.check(Rpc::Search, &with(headers)));
        assert_eq!(check(&[("api-key", "secret-rw")]), Ok(Access::ReadWrite));
        assert_eq!(check(&[("api-key", "secret-ro")]), Ok(Access::ReadOnly));
        assert_eq!(
            check(&[("authorization", "Bearer secret-rw")]),
            Ok(Access::ReadWrite)
        );
        let missing = Err((
            Code::Unauthenticated,
            "Must provide an API key or an Authorization bearer token".to_owned(),
        ));
        let invalid = Err((Code::Unauthenticated, "Invalid API key or JWT".to_owned()));
        assert_eq!(check(&[]), missing);
        assert_eq!(check(&[("authorization", "bearer secret-rw")]), missing);
        assert_eq!(check(&[("api-key", "secret-rw ")]), invalid);
        assert_eq!(check(&[("api-key", "")]), invalid);
        assert_eq!(
            check(&[("api-key", "wrong"), ("authorization", "Bearer secret-rw")]),
            invalid,
            "the api-key header wins"
        );
        assert_eq!(
            code(keys.check(Rpc::HealthCheck, &with(&[]))),
            Ok(Access::ReadWrite),
            "health checks need no key"
        );
        assert_eq!(
            code(ApiKeys::default().check(Rpc::Search, &with(&[]))),
            Ok(Access::ReadWrite),
            "no keys configured, no check"
        );
    }

    #[test]
    fn a_read_only_key_alone_still_requires_a_key() {
        let keys = ApiKeys {
            read_write: None,
            read_only: Some(ApiKey::new("ro")),
        };
        assert!(keys.is_enabled());
        assert_eq!(
            code(keys.check(Rpc::Count, &with(&[("api-key", "ro")]))),
            Ok(Access::ReadOnly)
        );
        assert!(keys.check(Rpc::Count, &with(&[])).is_err());
    }

    #[test]
    fn debug_never_shows_a_key() {
        let debug = format!("{:?}", keys());
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}
