use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::AttemptTimedOut;
use super::future::ResponseFuture;
use crate::RequestInfo;
use crate::clock::Now;
use crate::setting::{DurationSetting, SharedDuration};

/// Bounds each call by a timeout, shrunk to the request's deadline.
///
/// See the [module documentation](super).
///
/// # `poll_ready`
/// Forwards to the inner service; the timeout starts when the call does.
///
/// # Cost
/// One clock read and one timer per call; nothing is boxed.
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: DurationSetting,
}

impl<S> AttemptTimeout<S> {
    /// Bounds each call to `inner` by `timeout`.
    pub const fn new(inner: S, timeout: Duration) -> Self {
        AttemptTimeout::from_setting(inner, DurationSetting::Fixed(timeout))
    }

    /// Bounds each call to `inner` by `timeout`, read on every call (see
    /// [`SharedDuration`]).
    pub fn shared(inner: S, timeout: SharedDuration) -> Self {
        AttemptTimeout::from_setting(inner, DurationSetting::Shared(timeout))
    }

    pub(crate) const fn from_setting(inner: S, timeout: DurationSetting) -> Self {
        AttemptTimeout { inner, timeout }
    }

    /// The longest an attempt may take when the call's deadline is further away (now).
    pub fn timeout(&self) -> Duration {
        self.timeout.get()
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

impl<S, Req> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req>,
    S::Error: From<AttemptTimedOut>,
    Req: RequestInfo,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Req) -> Self::Future {
        let clock = Now::read();
        let now = clock.at();
        let own = now + self.timeout.get();
        let (at, by_deadline) = match request.deadline() {
            Some(deadline) if deadline < own => (deadline, true),
            _ => {
                request.set_deadline(own);
                (own, false)
            }
        };
        let timed_out = AttemptTimedOut {
            limit: at.saturating_duration_since(now),
            by_deadline,
        };
        if timed_out.limit.is_zero() {
            return ResponseFuture::expired(timed_out);
        }
        ResponseFuture::new(self.inner.call(request), at, timed_out)
    }
}
