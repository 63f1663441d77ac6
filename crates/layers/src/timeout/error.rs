//! The error of an attempt that ran out of time.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::{Classify, ErrorKind};

/// An attempt did not complete within its limit and was dropped (cancelled).
///
/// The [`AttemptTimeout`](super::AttemptTimeout) service returns it as its inner service's own
/// error type, through `From<AttemptTimedOut>`. It classifies as [`ErrorKind::Timeout`], the
/// kind a server-side `DEADLINE_EXCEEDED` has, so retry and breaker treat both alike: a timeout
/// counts against the breaker, and only an idempotent request is retried after one. The request
/// may have been applied ([`Classify::maybe_sent`] is `true`), unless the call's deadline had
/// already passed when the attempt was to start: then nothing was sent and the limit is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptTimedOut {
    /// How long the attempt was given: the layer's timeout, or less when the call's deadline
    /// was nearer.
    pub limit: Duration,
    /// Whether the call's deadline, not the layer's own timeout, set the limit.
    pub by_deadline: bool,
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the attempt did not complete within {:?} ({}); it was cancelled and may have been applied",
            self.limit,
            if self.by_deadline {
                "the time left before the call's deadline"
            } else {
                "the attempt timeout"
            }
        )
    }
}

impl Error for AttemptTimedOut {}

impl Classify for AttemptTimedOut {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }

    /// `false` only when the deadline had passed before the attempt started (a zero
    /// [`limit`](Self::limit)): then nothing was sent.
    fn maybe_sent(&self) -> bool {
        !self.limit.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_attempt_is_a_timeout_that_may_have_been_sent() {
        let e = AttemptTimedOut {
            limit: Duration::from_millis(250),
            by_deadline: true,
        };
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.maybe_sent());
        let text = e.to_string();
        assert!(
            text.contains("250ms") && text.contains("deadline"),
            "{text}"
        );
    }
}
