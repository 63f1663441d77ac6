use std::time::Duration;

use tower_layer::Layer;

use super::Deadline;
use crate::setting::{DurationSetting, SharedDuration};

/// Bounds each call of the services it builds by a deadline: the request's own, or the
/// layer's default from the call's start.
///
/// See the [module documentation](super).
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    default: DurationSetting,
}

impl DeadlineLayer {
    /// A layer giving each call that carries no deadline of its own `default` to complete.
    pub const fn new(default: Duration) -> Self {
        DeadlineLayer {
            default: DurationSetting::Fixed(default),
        }
    }

    /// A layer whose default deadline is read from `default` on every call, so that it can
    /// be changed while its services run (a configuration reload).
    pub fn shared(default: SharedDuration) -> Self {
        DeadlineLayer {
            default: DurationSetting::Shared(default),
        }
    }

    /// The deadline a call gets when its request carries none (now).
    pub fn default_deadline(&self) -> Duration {
        self.default.get()
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, service: S) -> Self::Service {
        Deadline::from_setting(service, self.default.clone())
    }
}
