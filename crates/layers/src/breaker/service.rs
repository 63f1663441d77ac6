use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::CircuitOpen;
use super::future::ResponseFuture;
use super::handle::Breaker;
use super::state::{Gate, Guard};
use crate::Classify;

/// A service gated by a circuit breaker.
///
/// Calls go through while the breaker is closed, are rejected at once with the inner
/// service's error built from [`CircuitOpen`] while it is open, and only a bounded number go
/// through while it is half-open. Outcomes are classified with [`Classify`] and reported to
/// the shared [`Breaker`] when each response future completes.
///
/// # `poll_ready`
/// When the breaker would reject, the inner service is not polled at all: by default
/// `poll_ready` reports ready and the next `call` returns the rejection without touching the
/// inner service. With [`BreakerConfig::with_backpressure`](super::BreakerConfig::with_backpressure)
/// it returns `Pending` instead and wakes the task when the open wait ends or the state
/// changes. In half-open state `poll_ready` takes a trial permit and holds it until `call`
/// (dropping the service gives it back). A call can still be rejected after a ready
/// `poll_ready` if the breaker opens in between.
///
/// # Clone
/// Clones share the breaker, not the readiness obtained by `poll_ready`.
pub struct CircuitBreaker<S> {
    inner: S,
    breaker: Breaker,
    ready: Ready,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// What `poll_ready` decided for the next `call`.
enum Ready {
    /// Not decided (no `poll_ready` since the last call).
    Unpolled,
    /// The inner service is ready; `call` still checks the breaker (one load).
    Inner,
    /// A half-open trial permit is held for the next call.
    Trial(Guard),
    /// The next call is rejected (the inner service was not polled).
    Reject(CircuitOpen),
}

impl<S> CircuitBreaker<S> {
    /// Gates `inner` with `breaker`.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            ready: Ready::Unpolled,
            sleep: None,
        }
    }

    /// The breaker this service reports to.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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

    /// Backpressure: registers for the next state change and, when open, for the end of the
    /// wait. `Ready` means something may have changed: ask the breaker again.
    fn wait(&mut self, cx: &mut Context<'_>, open: &CircuitOpen) -> Poll<()> {
        let Some(retry_in) = open.retry_in else {
            return Poll::Pending; // woken by the next state change or returned permit
        };
        let deadline = Instant::now() + retry_in;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        sleep.as_mut().poll(cx)
    }
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker::new(self.inner.clone(), self.breaker.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req>,
    S::Error: Classify + From<CircuitOpen>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let (mut registered, mut slept) = (false, false);
        loop {
            match self.ready {
                Ready::Reject(_) => return Poll::Ready(Ok(())),
                Ready::Inner | Ready::Trial(_) => break,
                Ready::Unpolled => {}
            }
            match self.breaker.shared.gate(&self.breaker.lanes) {
                Gate::Pass(_) => break,
                Gate::Trial(guard) => {
                    self.ready = Ready::Trial(guard);
                    break;
                }
                Gate::Reject(open) if !self.breaker.shared.backpressure() => {
                    self.ready = Ready::Reject(open);
                    return Poll::Ready(Ok(()));
                }
                Gate::Reject(open) => {
                    if !registered {
                        // Register first, then look again, so no change is missed.
                        self.breaker.shared.register_waiter(cx.waker());
                        registered = true;
                        continue;
                    }
                    if slept {
                        // The wait ended but the breaker still rejects: yield rather than
                        // spin inside one poll.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if self.wait(cx, &open).is_pending() {
                        return Poll::Pending;
                    }
                    slept = true;
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                if let Ready::Unpolled = self.ready {
                    self.ready = Ready::Inner;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.ready = Ready::Unpolled; // gives a held trial permit back
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let admitted = match std::mem::replace(&mut self.ready, Ready::Unpolled) {
            Ready::Trial(mut guard) => {
                guard.mark_called();
                Ok(Some(guard))
            }
            Ready::Reject(open) => Err(open),
            Ready::Inner | Ready::Unpolled => self.breaker.shared.admit(&self.breaker.lanes),
        };
        match admitted {
            Ok(guard) => ResponseFuture::called(self.inner.call(request), guard),
            Err(open) => {
                self.breaker.shared.count_rejection(&self.breaker.lanes);
                ResponseFuture::rejected(S::Error::from(open))
            }
        }
    }
}
