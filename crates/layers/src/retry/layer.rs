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
        let policy = self.shared.policy.clone();
        RetryLayer {
            shared: Arc::new(Shared::new(policy, Some(budget))),
        }
    }

    /// The policy of this layer's services.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
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

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, service: S) -> Self::Service {
        Retry::from_shared(service, self.shared.clone())
    }
}
