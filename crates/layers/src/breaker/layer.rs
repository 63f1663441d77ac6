use tower_layer::Layer;

use super::CircuitBreaker;
use super::handle::Breaker;

/// Wraps services in a [`CircuitBreaker`]. Every service it builds shares one [`Breaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: Breaker,
}

impl CircuitBreakerLayer {
    /// A layer whose services report to and are gated by `breaker`.
    pub fn new(breaker: Breaker) -> Self {
        CircuitBreakerLayer { breaker }
    }

    /// The breaker this layer's services share.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, service: S) -> Self::Service {
        CircuitBreaker::new(service, self.breaker.clone())
    }
}
