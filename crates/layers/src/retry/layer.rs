use std::sync::Arc;

use tower_layer::Layer;

use super::service::Shared;
use super::{ConfigError, Retry, RetryBudget, RetryPolicy};

/// Wraps services in a [`Retry`]. Every service it builds, and every clone of them, shares one
/// policy, one [`RetryBudget`] and one seed sequence.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

impl RetryLayer {
    /// A layer retrying by `policy`, with a budget of its own built from the policy's budget
    /// settings. Fails on the first field of `policy` out of range.
    pub fn new(policy: RetryPolicy) -> Result<Self, ConfigError> {
        policy.validate()?;
        let budget = policy
            .budget()
            .map(RetryBudget::from_settings)
            .transpose()?;
        Ok(RetryLayer {
            shared: Arc::new(Shared::new(policy, budget)),
        })
    }

    /// Draw retries from `budget` instead, e.g. one budget shared by several layers.
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        let policy = RetryPolicy::clone(&self.shared.policy.load());
        RetryLayer {
            shared: Arc::new(Shared::new(policy, Some(budget))),
        }
    }

    /// The policy of this layer's services (now).
    pub fn policy(&self) -> Arc<RetryPolicy> {
        self.shared.policy.load_full()
    }

    /// Makes every service this layer built, and will build, retry by `policy` from now on:
    /// calls under way take their next decision by it. The budget and its settings stay (a
    /// budget in `policy` is ignored; build a new layer to change it). Fails, keeping the
    /// old policy, on the first field of `policy` out of range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use qdrant_tower_layers::{ErrorKind, RetryLayer, RetryPolicy};
    ///
    /// let layer = RetryLayer::new(RetryPolicy::default()).unwrap();
    /// layer
    ///     .set_policy(RetryPolicy::default().with_attempts(ErrorKind::Unavailable, 5))
    ///     .unwrap();
    /// assert_eq!(layer.policy().kind(ErrorKind::Unavailable).max_attempts, 5);
    /// assert!(layer.set_policy(RetryPolicy::default().with_time_scale(-1.0)).is_err());
    /// assert_eq!(layer.policy().kind(ErrorKind::Unavailable).max_attempts, 5);
    /// ```
    pub fn set_policy(&self, policy: RetryPolicy) -> Result<(), ConfigError> {
        self.shared.set_policy(policy)
    }

    /// The budget this layer's services share, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The same policy, budget and seed as a [`tower::retry::Policy`], for
    /// `tower::retry::Retry`; see [`TowerPolicy`](super::TowerPolicy) for what it cannot do.
    pub fn tower_policy(&self) -> super::TowerPolicy {
        super::TowerPolicy::new(self.shared.clone())
    }
}

impl<S: Clone> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, service: S) -> Self::Service {
        Retry::from_shared(service, self.shared.clone())
    }
}
