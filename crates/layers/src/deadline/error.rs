//! The error of a call that ran out of time.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::{Classify, ErrorKind};

/// The deadline for the whole call passed while the call was in flight.
///
/// Raised by the [`DeadlineLayer`](super::DeadlineLayer) and by the
/// [`RetryLayer`](crate::retry::RetryLayer): the work in flight is dropped (cancelled) and
/// the call fails with the inner service's error built from this, through
/// `From<DeadlineExceeded>`. It classifies as [`ErrorKind::Timeout`]; the request may have
/// been applied ([`Classify::maybe_sent`] is `true`).
///
/// When the retry layer sees the deadline pass between attempts instead (a backoff or a
/// server's `retry_after` that would end after it, or the inner service not ready in time), the
/// call fails with the last attempt's own error, which says more than this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// The deadline the call had, from its start.
    pub deadline: Duration,
    /// How many attempts were started, the interrupted one included, when the layer that
    /// raised it counts attempts (the retry layer does, the deadline layer does not). `Some(0)`:
    /// the deadline had passed before the call started, and nothing was sent.
    pub attempts: Option<u32>,
    // Lets `Classify for tower::BoxError` find a timeout in the source chain.
    elapsed: ElapsedSource,
}

impl DeadlineExceeded {
    pub(crate) fn new(deadline: Duration, attempts: Option<u32>) -> Self {
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
            "the call did not complete within its {:?} deadline",
            self.deadline
        )?;
        match self.attempts {
            Some(0) => f.write_str(": it had passed before the call started, nothing was sent"),
            Some(n) => write!(
                f,
                " ({n} attempt{} started); the attempt in flight was cancelled and may have been applied",
                if n == 1 { "" } else { "s" }
            ),
            None => f.write_str("; the work in flight was cancelled and may have been applied"),
        }
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

    /// `false` only when the deadline had passed before anything was started.
    fn maybe_sent(&self) -> bool {
        self.attempts != Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_exceeded_is_a_timeout_even_boxed() {
        let err = DeadlineExceeded::new(Duration::from_secs(2), Some(3));
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.maybe_sent());
        let text = err.to_string();
        assert!(text.contains("2s") && text.contains("3 attempts"), "{text}");
        let boxed: tower::BoxError = Box::new(err);
        assert_eq!(boxed.kind(), ErrorKind::Timeout);
    }
}
