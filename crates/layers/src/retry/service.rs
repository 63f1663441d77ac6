use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tower_service::Service;

use super::backoff::mix;
use super::future::ResponseFuture;
use super::observe::{Metrics, attempt_span};
use super::{RetryBudget, RetryPolicy};
use crate::ConfigError;
use crate::classify::tighten_deadline;
use crate::clock::Now;
use crate::deadline::DeadlineExceeded;
use crate::{Classify, RequestInfo};

/// A service that retries failed calls by a [`RetryPolicy`].
///
/// See the [module documentation](super) for what is retried and when.
///
/// # `poll_ready`
/// Forwards to the inner service: the first attempt is sent on the service the caller made
/// ready. A call's retries run on one clone of the inner service, taken at its first retry
/// from a spare clone made when this `Retry` was built, and wait for that clone's
/// `poll_ready` (bounded by the deadline, if any) before sending. (Tower's retry clones the
/// inner service when each call starts instead; for the services a stack is made of —
/// handles on shared state — both clones are alike, and a call that succeeds first time, the
/// common case, then clones nothing.) A change made through [`get_mut`](Retry::get_mut)
/// reaches first attempts only.
///
/// # Clone
/// Clones share the policy, the [`RetryBudget`], the seed sequence and the spare clone of the
/// inner service; the inner service itself is cloned.
///
/// # Cost
/// Each call clones the request once (kept for retries; requests meant for retrying are cheap
/// to clone, like `VectorRequest`'s shared body) and one `Arc`, deposits into the budget, and
/// creates a `tracing` span; with a deadline it reads the clock and arms a timer. Nothing is
/// boxed. The first retry clones the inner service (under a lock: off the hot path), each
/// retry the request.
pub struct Retry<S> {
    inner: S,
    shared: Arc<CallShared<S>>,
}

/// What every call of a retry service (and of its clones) shares: the layer's [`Shared`] and a
/// spare clone of the inner service to take retries' services from.
pub(crate) struct CallShared<S> {
    pub retry: Arc<Shared>,
    // A mutex so that a future holding this is `Send` when `S` is, as when it held `S` itself
    // (`S` need not be `Sync`; tower's `BoxCloneService` is not). Locked once per retried call.
    spare: Mutex<S>,
}

impl<S: Clone> CallShared<S> {
    /// A service for a call's retries.
    pub fn service(&self) -> S {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What every clone of a retry service, and every call it starts, shares.
pub(crate) struct Shared {
    pub policy: ArcSwap<RetryPolicy>,
    pub budget: Option<RetryBudget>,
    pub metrics: Metrics,
    seeds: AtomicU64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Shared {
    pub fn new(policy: RetryPolicy, budget: Option<RetryBudget>) -> Self {
        let seed = policy
            .seed()
            .unwrap_or_else(|| RandomState::new().hash_one(0x5EED_u64));
        Shared {
            policy: ArcSwap::from_pointee(policy),
            budget,
            metrics: Metrics::register(),
            seeds: AtomicU64::new(seed),
        }
    }

    /// Swaps the policy after checking it; the budget and seed sequence stay.
    pub fn set_policy(&self, policy: RetryPolicy) -> Result<(), ConfigError> {
        policy.validate()?;
        self.policy.store(Arc::new(policy));
        Ok(())
    }

    /// A fresh seed for one call's jitter (the SplitMix64 sequence of the layer's seed).
    pub fn next_seed(&self) -> u64 {
        mix(self
            .seeds
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA))
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("policy", &self.policy.load())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<S: Clone> Retry<S> {
    /// Retries calls to `inner` by `policy`, with a budget of its own (shared by clones of
    /// this service). Fails on the first field of `policy` out of range.
    pub fn new(inner: S, policy: RetryPolicy) -> Result<Self, ConfigError> {
        policy.validate()?;
        let budget = policy
            .budget()
            .map(RetryBudget::from_settings)
            .transpose()?;
        Ok(Retry::from_shared(
            inner,
            Arc::new(Shared::new(policy, budget)),
        ))
    }

    pub(crate) fn from_shared(inner: S, retry: Arc<Shared>) -> Self {
        let spare = Mutex::new(inner.clone());
        Retry {
            inner,
            shared: Arc::new(CallShared { retry, spare }),
        }
    }
}

impl<S> Retry<S> {
    /// The policy this service retries by (now).
    pub fn policy(&self) -> Arc<RetryPolicy> {
        self.shared.retry.policy.load_full()
    }

    /// Retries by `policy` from now on, in this service, its clones and every service of
    /// the layer it came from; see [`RetryLayer::set_policy`](super::RetryLayer::set_policy).
    pub fn set_policy(&self, policy: RetryPolicy) -> Result<(), ConfigError> {
        self.shared.retry.set_policy(policy)
    }

    /// The budget this service and its clones share, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.retry.budget.as_ref()
    }

    /// Get a reference to the inner service
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Get a mutable reference to the inner service (the one first attempts are sent on;
    /// retries run on clones of the service this `Retry` was built with)
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consume `self`, returning the inner service
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// When the call of `request`, started `now`, must be over: the earlier of the request's
    /// own deadline and the policy's, which the request then carries to the layers below.
    fn deadline_for<Req: RequestInfo>(
        own: Option<Duration>,
        request: &mut Req,
        now: Instant,
    ) -> Option<Instant> {
        match own {
            Some(total) => Some(tighten_deadline(request, now + total)),
            None => request.deadline(),
        }
    }
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.retry.policy.load())
            .field("budget", &self.shared.retry.budget)
            .finish()
    }
}

impl<S, Req> Service<Req> for Retry<S>
where
    S: Service<Req> + Clone,
    S::Error: Classify + From<DeadlineExceeded>,
    Req: RequestInfo + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let mut request = request;
        let shared = &self.shared.retry;
        let own_deadline = shared.policy.load().deadline();
        let timed = own_deadline.is_some() || request.deadline().is_some();
        // One clock reading for the budget and the deadline both, shared with the layers
        // below while this `call` runs (see `clock`).
        let clock = (timed || shared.budget.is_some()).then(Now::read);
        let now = clock.as_ref().map(Now::at);
        if let (Some(budget), Some(now)) = (&shared.budget, now) {
            budget.deposit_at(now);
        }
        let deadline = match now {
            Some(now) if timed => Self::deadline_for(own_deadline, &mut request, now)
                .map(|at| (at, at.saturating_duration_since(now))),
            _ => None,
        };
        let span = attempt_span(&request, 1, Duration::ZERO);
        let retained = request.clone();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture::new(future, retained, self.shared.clone(), span, deadline)
    }
}
