//! Error types: the rejection a caller sees, and a bad configuration.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Classify, ErrorKind};

/// The breaker rejected the call without sending it.
///
/// The breaker's service returns it as its inner service's own error type, through
/// `From<CircuitOpen>`, so a whole stack keeps one typed error. It classifies as
/// [`ErrorKind::CircuitOpen`]: not transient (retrying at once would be rejected again), not a
/// failure of the backend, and never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    /// The name of the breaker that rejected the call.
    pub name: Arc<str>,
    /// How long until the breaker lets trial calls through, when known. `None` when it is
    /// forced open by an operator, or half-open with every trial permit taken.
    pub retry_in: Option<Duration>,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker `{}` is open: the call was rejected without being sent",
            self.name
        )?;
        match self.retry_in {
            Some(d) => write!(f, "; it admits trial calls again in {d:?}"),
            None => f.write_str(
                "; it is forced open or all its trial calls are in flight, \
                 check the breaker's state before retrying",
            ),
        }
    }
}

impl Error for CircuitOpen {}

impl Classify for CircuitOpen {
    fn kind(&self) -> ErrorKind {
        ErrorKind::CircuitOpen
    }

    /// The time left in the open state, as a hint for callers and fallbacks.
    fn retry_after(&self) -> Option<Duration> {
        self.retry_in
    }

    fn maybe_sent(&self) -> bool {
        false
    }
}

/// Lets services whose error is `tower::BoxError` (as `tower::timeout` and `tower::buffer`
/// produce) sit behind the breaker.
///
/// A [`CircuitOpen`] anywhere in the error's source chain classifies as
/// [`ErrorKind::CircuitOpen`], an [`Unhealthy`](crate::Unhealthy) as
/// [`ErrorKind::Unhealthy`]; an [`AttemptTimedOut`](crate::AttemptTimedOut),
/// [`DeadlineExceeded`](crate::DeadlineExceeded), Tokio or tower timeout as
/// [`ErrorKind::Timeout`]; anything
/// else as [`ErrorKind::Internal`] (an unknown error counts against the breaker). Give your
/// service a typed error implementing [`Classify`] to decide better.
impl Classify for Box<dyn Error + Send + Sync> {
    fn kind(&self) -> ErrorKind {
        let mut next: Option<&(dyn Error + 'static)> = Some(self.as_ref());
        while let Some(err) = next {
            if err.is::<CircuitOpen>() {
                return ErrorKind::CircuitOpen;
            }
            if err.is::<crate::Unhealthy>() {
                return ErrorKind::Unhealthy;
            }
            if err.is::<crate::AttemptTimedOut>() || err.is::<crate::DeadlineExceeded>() {
                return ErrorKind::Timeout;
            }
            if err.is::<tokio::time::error::Elapsed>() || err.is::<tower::timeout::error::Elapsed>()
            {
                return ErrorKind::Timeout;
            }
            next = err.source();
        }
        ErrorKind::Internal
    }

    fn retry_after(&self) -> Option<Duration> {
        self.downcast_ref::<CircuitOpen>()
            .and_then(|open| open.retry_in)
    }

    fn maybe_sent(&self) -> bool {
        if let Some(e) = self.downcast_ref::<crate::AttemptTimedOut>() {
            return e.maybe_sent();
        }
        if let Some(e) = self.downcast_ref::<crate::DeadlineExceeded>() {
            return e.maybe_sent();
        }
        !(self.is::<CircuitOpen>() || self.is::<crate::Unhealthy>())
    }
}

pub use crate::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_open_is_final_and_never_sent() {
        let open = CircuitOpen {
            name: "search".into(),
            retry_in: Some(Duration::from_secs(3)),
        };
        assert_eq!(open.kind(), ErrorKind::CircuitOpen);
        assert!(!open.kind().is_transient());
        assert!(!open.kind().counts_as_failure());
        assert!(!open.maybe_sent());
        let text = open.to_string();
        assert!(text.contains("`search`") && text.contains("3s"), "{text}");
    }

    #[test]
    fn box_error_finds_circuit_open_and_timeouts() {
        let boxed: tower::BoxError = Box::new(CircuitOpen {
            name: "a".into(),
            retry_in: None,
        });
        assert_eq!(boxed.kind(), ErrorKind::CircuitOpen);
        assert!(!boxed.maybe_sent());
        let timeout: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        let other: tower::BoxError = "boom".into();
        assert_eq!(other.kind(), ErrorKind::Internal);
        assert!(other.maybe_sent());
    }
}
