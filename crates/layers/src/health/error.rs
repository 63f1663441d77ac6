//! The rejection a caller sees while the backend is unhealthy.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Classify, ErrorKind};

/// The health gate rejected the call without sending it: its prober found the backend
/// unhealthy.
///
/// The [`HealthGate`](super::HealthGate) service returns it as its inner service's own error
/// type, through `From<Unhealthy>`. It classifies as [`ErrorKind::Unhealthy`]: not transient
/// (a retry at once would be rejected again), not a failure of the backend for the breaker, and
/// never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// The name of the health check that rejected the call.
    pub name: Arc<str>,
    /// How many probes in a row had failed when the call was rejected.
    pub failed_probes: u32,
    /// How long the call waited for a recovery before it was rejected (zero when the gate
    /// fails fast).
    pub waited: Duration,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "health check `{}` reports the backend unhealthy ({} failed probe{} in a row): \
             the call was rejected without being sent",
            self.name,
            self.failed_probes,
            if self.failed_probes == 1 { "" } else { "s" }
        )?;
        if !self.waited.is_zero() {
            write!(f, " after waiting {:?} for a recovery", self.waited)?;
        }
        Ok(())
    }
}

impl Error for Unhealthy {}

impl Classify for Unhealthy {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unhealthy
    }

    fn maybe_sent(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_is_final_and_never_sent() {
        let e = Unhealthy {
            name: "qdrant".into(),
            failed_probes: 3,
            waited: Duration::from_millis(500),
        };
        assert_eq!(e.kind(), ErrorKind::Unhealthy);
        assert!(!e.kind().is_transient() && !e.kind().counts_as_failure());
        assert!(!e.maybe_sent());
        let text = e.to_string();
        assert!(
            text.contains("`qdrant`") && text.contains("3 failed probes") && text.contains("500ms"),
            "{text}"
        );
    }
}
