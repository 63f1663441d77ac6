use std::time::Duration;

use tower_layer::Layer;

use super::AttemptTimeout;

/// Bounds each call of the services it builds by a timeout, or the time left before the
/// request's deadline if that is less.
///
/// See the [module documentation](super).
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
}

impl AttemptTimeoutLayer {
    /// A layer giving each attempt at most `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, service: S) -> Self::Service {
        AttemptTimeout::new(service, self.timeout)
    }
}
