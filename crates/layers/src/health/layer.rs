use tower_layer::Layer;

use super::{HealthCheck, HealthGate};

/// Wraps services in a [`HealthGate`]. Every gate it builds follows one [`HealthCheck`].
#[derive(Debug, Clone)]
pub struct HealthGateLayer {
    check: HealthCheck,
}

impl HealthGateLayer {
    /// A layer whose gates pass or reject calls by `check`'s status.
    pub fn new(check: HealthCheck) -> Self {
        HealthGateLayer { check }
    }

    /// The health check this layer's gates follow.
    pub fn check(&self) -> &HealthCheck {
        &self.check
    }
}

impl<S> Layer<S> for HealthGateLayer {
    type Service = HealthGate<S>;

    fn layer(&self, service: S) -> Self::Service {
        HealthGate::new(service, self.check.clone())
    }
}
