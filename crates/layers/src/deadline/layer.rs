use std::time::Duration;

use tower_layer::Layer;

use super::Deadline;

/// Bounds each call of the services it builds by a deadline: the request's own, or the
/// layer's default from the call's start.
///
/// See the [module documentation](super).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    /// A layer giving each call that carries no deadline of its own `default` to complete.
    pub const fn new(default: Duration) -> Self {
        DeadlineLayer { default }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, service: S) -> Self::Service {
        Deadline::new(service, self.default)
    }
}
