//! Error types: the call ran out of time, and a bad configuration.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::{Classify, ErrorKind};

/// The retry layer's deadline for the whole call passed while an attempt was in flight.
///
/// The attempt is dropped (cancelled) and the call fails with the inner service's error built
/// from this, through `From<DeadlineExceeded>`. It classifies as [`ErrorKind::Timeout`]; the
/// request may have been applied ([`Classify::maybe_sent`] is `true`).
///
/// When the deadline passes between attempts instead (a backoff or a server's `retry_after`
/// that would end after it, or the inner service not ready in time), the call fails with the
/// last attempt's own error, which says more than this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// The deadline the call had, from its start.
    pub deadline: Duration,
    /// How many attempts were started, the interrupted one included.
    pub attempts: u32,
    // Lets `Classify for tower::BoxError` find a timeout in the source chain.
    elapsed: ElapsedSource,
}

impl DeadlineExceeded {
    pub(crate) fn new(deadline: Duration, attempts: u32) -> Self {
        DeadlineExceeded {
            deadline,
            attempts,
            elapsed: ElapsedSource(tower::timeout::error::Elapsed::new()),
        }
    }
}

#[derive(Debug)]
struct ElapsedSource(tower::timeout::error::Elapsed);

impl Clone for ElapsedSource {
    fn clone(&self) -> Self {
        ElapsedSource(tower::timeout::error::Elapsed::new())
    }
}

impl PartialEq for ElapsedSource {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ElapsedSource {}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the call did not complete within its {:?} deadline ({} attempt{} started); \
             the last attempt was cancelled and may have been applied",
            self.deadline,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

impl Error for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.elapsed.0)
    }
}

impl Classify for DeadlineExceeded {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
}

pub use crate::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_exceeded_is_a_timeout_even_boxed() {
        let err = DeadlineExceeded::new(Duration::from_secs(2), 3);
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.maybe_sent());
        let text = err.to_string();
        assert!(text.contains("2s") && text.contains("3 attempts"), "{text}");
        let boxed: tower::BoxError = Box::new(err);
        assert_eq!(boxed.kind(), ErrorKind::Timeout);
    }
}
