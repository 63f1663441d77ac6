use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{HealthCheck, Unhealthy};

type Recovery = Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// Passes calls while its [`HealthCheck`] says the backend is healthy; otherwise rejects them
/// with [`Unhealthy`] without sending them, at once or after waiting in `poll_ready` for a
/// recovery (see [`HealthConfig::with_wait_for_recovery`](super::HealthConfig::with_wait_for_recovery)).
///
/// # `poll_ready`
/// Healthy: forwards to the inner service. Unhealthy and failing fast: ready at once, and the
/// next `call` returns `Unhealthy` without touching the inner service. Unhealthy and waiting:
/// pending until the check reports a recovery (then forwards) or the wait ends (then ready, and
/// the next `call` is rejected). The rejection never comes out of `poll_ready` itself, so a
/// `Buffer` or balancer in front does not take the gate for a dead service.
///
/// # Cost
/// One atomic load per `poll_ready` while healthy; nothing is boxed then. Waiting for a
/// recovery boxes one future per wait.
pub struct HealthGate<S> {
    inner: S,
    check: HealthCheck,
    waiting: Option<(Instant, Recovery)>,
    reject: Option<Duration>,
}

impl<S> HealthGate<S> {
    /// Gates calls to `inner` by `check`.
    pub fn new(inner: S, check: HealthCheck) -> Self {
        HealthGate {
            inner,
            check,
            waiting: None,
            reject: None,
        }
    }

    /// The health check this gate follows.
    pub fn check(&self) -> &HealthCheck {
        &self.check
    }

    /// Get a reference to the inner service
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Get a mutable reference to the inner service
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consume `self`, returning the inner service
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for HealthGate<S> {
    fn clone(&self) -> Self {
        HealthGate::new(self.inner.clone(), self.check.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for HealthGate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthGate")
            .field("inner", &self.inner)
            .field("check", &self.check)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

impl<S, Req> Service<Req> for HealthGate<S>
where
    S: Service<Req>,
    S::Error: From<Unhealthy>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let shared = &self.check.shared;
        if shared.is_healthy() {
            self.waiting = None;
            self.reject = None;
            return self.inner.poll_ready(cx);
        }
        if self.reject.is_some() {
            return Poll::Ready(Ok(()));
        }
        let Some(bound) = shared.config.load().wait_for_recovery() else {
            self.reject = Some(Duration::ZERO);
            return Poll::Ready(Ok(()));
        };
        let (started, recovery) = self.waiting.get_or_insert_with(|| {
            let mut status = shared.watch();
            let wait = async move {
                tokio::time::timeout(bound, status.wait_for(|s| s.is_healthy()))
                    .await
                    .is_ok_and(|r| r.is_ok())
            };
            (Instant::now(), Box::pin(wait))
        });
        let recovered = std::task::ready!(recovery.as_mut().poll(cx));
        let waited = started.elapsed();
        self.waiting = None;
        if recovered {
            tracing::debug!(
                health_check = shared.config.load().name(),
                ?waited,
                "backend recovered while waiting"
            );
            return self.inner.poll_ready(cx);
        }
        self.reject = Some(waited);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.reject.take() {
            None => ResponseFuture::called(self.inner.call(request)),
            Some(waited) => {
                let shared = &self.check.shared;
                shared.count_rejection();
                ResponseFuture::rejected(Unhealthy {
                    name: shared.config.load().name_arc().clone(),
                    failed_probes: shared.consecutive_failures(),
                    waited,
                })
            }
        }
    }
}
