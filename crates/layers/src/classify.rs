//! The error taxonomy shared by every layer.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// What went wrong, as far as resilience decisions are concerned.
///
/// The kind alone decides whether a failure is transient (worth retrying) and whether it
/// counts against a circuit breaker; see [`ErrorKind::is_transient`] and
/// [`ErrorKind::counts_as_failure`]. The table follows DESIGN.md:
///
/// | kind | transient | counts against breaker |
/// |---|---|---|
/// | `Connect` | yes | yes |
/// | `Timeout` | yes (idempotent requests only) | yes |
/// | `RateLimited` | yes, not before `retry_after` | no |
/// | `Unavailable` | yes | yes |
/// | `Internal` | yes, few attempts | yes |
/// | `InsufficientStorage` | no | no |
/// | `InvalidRequest` | no | no |
/// | `NotFound`, `AlreadyExists` | no | no |
/// | `Unauthenticated`, `PermissionDenied` | no | no |
/// | `CircuitOpen`, `Unhealthy` | no | no |
/// | `Cancelled` | no | no |
/// | `QueueFull` | no | no |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection could not be made or broke: refused, reset, DNS failure, HTTP/2 GOAWAY.
    Connect,
    /// The call ran out of time: a server-side `DEADLINE_EXCEEDED` or a client-side timeout.
    Timeout,
    /// The server asked us to slow down (`RESOURCE_EXHAUSTED`, strict-mode rate limits).
    /// A [`Classify::retry_after`] hint says how long to wait.
    RateLimited,
    /// The server is up but cannot serve now: `UNAVAILABLE`, overloaded, shard down.
    Unavailable,
    /// The server failed unexpectedly: `INTERNAL`, `UNKNOWN`, `DATA_LOSS`.
    Internal,
    /// The server's disk is full (`RESOURCE_EXHAUSTED` marked `qdrant-insufficient-storage`).
    /// Writes will keep failing until an operator acts, so this is not retried.
    InsufficientStorage,
    /// The request itself is wrong: bad input, wrong vector dimension, failed precondition,
    /// out of range. Caught before sending where possible.
    InvalidRequest,
    /// The collection or point does not exist.
    NotFound,
    /// The collection (or alias) already exists.
    AlreadyExists,
    /// Missing or wrong credentials.
    Unauthenticated,
    /// Valid credentials without the right to do this.
    PermissionDenied,
    /// A circuit breaker rejected the call without sending it.
    CircuitOpen,
    /// A health gate rejected the call without sending it.
    Unhealthy,
    /// The caller cancelled the call, or gave up on it.
    Cancelled,
    /// The write-behind queue is full (its record or byte bound): the write was neither
    /// sent nor queued.
    QueueFull,
}

impl ErrorKind {
    /// Every kind, in declaration order (for tables, metrics and exhaustive tests).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::InsufficientStorage,
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::CircuitOpen,
        ErrorKind::Unhealthy,
        ErrorKind::Cancelled,
        ErrorKind::QueueFull,
    ];

    /// Whether trying the same request again may succeed.
    ///
    /// `Timeout` is transient, but a retry policy must still check that the request is
    /// idempotent: a timed-out write may have been applied.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Connect
                | ErrorKind::Timeout
                | ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::Internal
        )
    }

    /// Whether a circuit breaker should count this as a failure of the backend.
    ///
    /// Only signs that the backend itself is sick count. A bad request, a missing collection,
    /// a rate limit (the backend is healthy and protecting itself), a full disk (reads still
    /// work), an auth problem, a cancellation or another layer's rejection do not.
    pub const fn counts_as_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Internal
        )
    }

    /// A short, stable, snake_case name, for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::InsufficientStorage => "insufficient_storage",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::QueueFull => "queue_full",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the layers see an error: its kind and what it says about retrying.
///
/// Implement it for your service's error type to use the layers of this crate with any
/// service, not only Qdrant's.
///
/// ```
/// use qdrant_tower_layers::{Classify, ErrorKind};
///
/// #[derive(Debug)]
/// enum MyError { Refused, BadInput }
///
/// impl Classify for MyError {
///     fn kind(&self) -> ErrorKind {
///         match self {
///             MyError::Refused => ErrorKind::Connect,
///             MyError::BadInput => ErrorKind::InvalidRequest,
///         }
///     }
///     fn maybe_sent(&self) -> bool {
///         // A refused connection never carried the request.
///         !matches!(self, MyError::Refused)
///     }
/// }
///
/// assert!(MyError::Refused.kind().is_transient());
/// assert!(!MyError::BadInput.kind().counts_as_failure());
/// ```
pub trait Classify {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;

    /// The server's own word on when to try again (`retry-after`), if it gave one.
    /// A retry policy never tries sooner than this.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Whether the request may have reached the server (and so may have been applied).
    ///
    /// `false` only when the failure proves the request was never sent: connection refused,
    /// HTTP/2 `REFUSED_STREAM`, or a `GOAWAY` before the stream opened. Such a failure is safe
    /// to retry even for a request that is not idempotent. The default, `true`, is the safe
    /// answer.
    fn maybe_sent(&self) -> bool {
        true
    }

    /// Records on the error a call ends with what the whole call did: `attempts` made (each
    /// call of the service below the retry layer, a local rejection included) and whether any
    /// of them `maybe_sent` the request to the server.
    ///
    /// The [`RetryLayer`](crate::retry::RetryLayer) calls it on the error it returns, with
    /// `maybe_sent` already folded over every attempt (the returned error's own answer
    /// included), so that after it [`maybe_sent`](Classify::maybe_sent) describes the call and
    /// not only its last attempt: a write whose first attempt may have been applied and whose
    /// retry was then rejected by an open breaker still says "maybe sent". An error type that
    /// can carry this should store both; the default ignores them.
    fn record_attempts(&mut self, attempts: u32, maybe_sent: bool) {
        let _ = (attempts, maybe_sent);
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn kind(&self) -> ErrorKind {
        (**self).kind()
    }
    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }
    fn maybe_sent(&self) -> bool {
        (**self).maybe_sent()
    }
}

/// What a request tells the layers about itself.
///
/// Retry uses [`RequestInfo::is_idempotent`] to decide whether an ambiguous failure may be
/// retried; metrics and traces use the operation and collection names.
pub trait RequestInfo {
    /// A short, stable name of the operation (`"search"`, `"upsert"`…), for metrics and traces.
    fn operation(&self) -> &'static str;

    /// The collection (or other resource) the request addresses, if any.
    fn collection(&self) -> Option<&str> {
        None
    }

    /// Whether sending the request twice has the same effect as sending it once.
    fn is_idempotent(&self) -> bool;

    /// Whether the request only reads (a search, a count, a get…): it changes nothing on the
    /// server. Not the same as idempotent: an upsert with explicit ids is an idempotent
    /// write. Used to key breakers by read/write class
    /// ([`BreakerKey::CollectionAndClass`](crate::breaker::BreakerKey::CollectionAndClass)).
    /// The default, `false`, puts every request in the write class.
    fn is_read(&self) -> bool {
        false
    }

    /// The instant by which the whole call must be over, if the request carries one.
    ///
    /// A per-request deadline: the [`DeadlineLayer`](crate::deadline::DeadlineLayer) and the
    /// [`RetryLayer`](crate::retry::RetryLayer) bound the call by it, the
    /// [attempt timeout](crate::timeout) shrinks each attempt to it, and a service at the
    /// bottom of the stack can hand the time left to the backend (`QdrantService` sends it as
    /// `grpc-timeout` and in the request's own `timeout` field). The default, for request types
    /// that cannot carry one, is `None`.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Makes the request carry `deadline` (see [`RequestInfo::deadline`]).
    ///
    /// The layers of this crate only ever move a deadline earlier: they pass the earlier of the
    /// request's own deadline and theirs. The default ignores it, for request types that cannot
    /// carry one; the layers then still enforce their deadlines, but the service below does
    /// not learn of them.
    fn set_deadline(&mut self, deadline: Instant) {
        let _ = deadline;
    }
}

/// The earlier of the request's own deadline and `at`, now carried by the request.
pub(crate) fn tighten_deadline<R: RequestInfo + ?Sized>(request: &mut R, at: Instant) -> Instant {
    match request.deadline() {
        Some(own) if own <= at => own,
        _ => {
            request.set_deadline(at);
            at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backend_sickness_counts_against_the_breaker() {
        let counted: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.counts_as_failure())
            .collect();
        assert_eq!(
            counted,
            [
                ErrorKind::Connect,
                ErrorKind::Timeout,
                ErrorKind::Unavailable,
                ErrorKind::Internal
            ]
        );
    }

    #[test]
    fn rejections_and_caller_mistakes_are_not_transient() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::CircuitOpen,
            ErrorKind::Unhealthy,
            ErrorKind::Cancelled,
            ErrorKind::InsufficientStorage,
            ErrorKind::QueueFull,
        ] {
            assert!(!kind.is_transient(), "{kind} must not be retried");
        }
        assert!(ErrorKind::RateLimited.is_transient());
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
