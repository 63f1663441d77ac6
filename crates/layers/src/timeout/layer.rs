use std::time::Duration;

use tower_layer::Layer;

use super::AttemptTimeout;
use crate::setting::{DurationSetting, SharedDuration};

/// Bounds each call of the services it builds by a timeout, or the time left before the
/// request's deadline if that is less.
///
/// See the [module documentation](super).
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer {
    timeout: DurationSetting,
}

impl AttemptTimeoutLayer {
    /// A layer giving each attempt at most `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer {
            timeout: DurationSetting::Fixed(timeout),
        }
    }

    /// A layer whose timeout is read from `timeout` on every attempt, so that it can be
    /// changed while its services run (a configuration reload).
    pub fn shared(timeout: SharedDuration) -> Self {
        AttemptTimeoutLayer {
            timeout: DurationSetting::Shared(timeout),
        }
    }

    /// The longest an attempt may take (now).
    pub fn timeout(&self) -> Duration {
        self.timeout.get()
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, service: S) -> Self::Service {
        AttemptTimeout::from_setting(service, self.timeout.clone())
    }
}
