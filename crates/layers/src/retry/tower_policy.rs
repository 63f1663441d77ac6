//! The same per-kind policy as a [`tower::retry::Policy`], for `tower::retry::Retry`.

use std::fmt;
use std::sync::Arc;

use tokio::time::Sleep;

use super::policy::{BackoffState, Decision};
use super::service::Shared;
use crate::{Classify, RequestInfo};

/// A [`RetryLayer`](super::RetryLayer)'s policy, table, budget and seed as a
/// [`tower::retry::Policy`], from [`RetryLayer::tower_policy`](super::RetryLayer::tower_policy).
///
/// For code built around `tower::retry::Retry` (or `tower::retry::RetryLayer`): the same
/// decisions — transient kinds only, idempotency, per-kind attempts and jittered backoff,
/// `retry_after` as a floor, the request's [deadline](RequestInfo::deadline) (no retry whose
/// delay reaches past it), the shared budget — and the same metrics. What `tower`'s `Retry`
/// cannot do is what the [`RetryLayer`](super::RetryLayer) adds on top: it cannot drop an
/// attempt still running at the deadline, nor bound the wait for the inner service's
/// readiness, nor wrap each attempt in a span. Prefer the layer; use this where a
/// `tower::retry::Policy` is required.
///
/// ```
/// use qdrant_tower_layers::retry::{RetryLayer, RetryPolicy};
///
/// let layer = RetryLayer::new(RetryPolicy::default()).unwrap();
/// let tower_layer = tower::retry::RetryLayer::new(layer.tower_policy());
/// # let _ = tower_layer;
/// ```
///
/// `tower`'s `Retry` clones its policy for each call, so each call counts its own attempts.
#[derive(Clone)]
pub struct TowerPolicy {
    shared: Arc<Shared>,
    attempt: u32,
    // Whether any failed attempt so far may have reached the server (see
    // `Classify::record_attempts`).
    sent: bool,
    backoff: Option<BackoffState>,
}

impl TowerPolicy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        TowerPolicy {
            shared,
            attempt: 1,
            sent: false,
            backoff: None,
        }
    }

    /// The call ends with `error`: it carries what the whole call did.
    fn finish<E: Classify>(&self, error: &mut E) {
        let maybe_sent = self.sent || error.maybe_sent();
        error.record_attempts(self.attempt, maybe_sent);
    }
}

impl fmt::Debug for TowerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerPolicy")
            .field("policy", &self.shared.policy.load())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E> tower::retry::Policy<Req, Res, E> for TowerPolicy
where
    Req: RequestInfo + Clone,
    E: Classify,
{
    type Future = Sleep;

    fn retry(&mut self, request: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        let error = result.as_mut().err()?;
        let shared = &*self.shared;
        let backoff = self
            .backoff
            .get_or_insert_with(|| BackoffState::new(shared.next_seed()));
        let deadline = request.deadline();
        let Decision::Retry(delay) =
            shared
                .policy
                .load()
                .decide(&*request, &*error, self.attempt, backoff, deadline)
        else {
            self.finish(error);
            return None;
        };
        let kind = error.kind();
        if let Some(budget) = &shared.budget
            && !budget.withdraw()
        {
            shared.metrics.budget_exhausted[kind as usize].increment(1);
            tracing::warn!(
                op = request.operation(),
                error_kind = kind.as_str(),
                "retry budget exhausted: returning the error without retrying"
            );
            self.finish(error);
            return None;
        }
        shared.metrics.retries[kind as usize].increment(1);
        self.sent |= error.maybe_sent();
        self.attempt += 1;
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        // Called before each attempt; the first one is a new call for the budget.
        if self.attempt == 1
            && self.backoff.is_none()
            && let Some(budget) = &self.shared.budget
        {
            budget.deposit();
        }
        Some(request.clone())
    }
}
