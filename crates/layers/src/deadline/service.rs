use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::DeadlineExceeded;
use super::future::ResponseFuture;
use crate::RequestInfo;
use crate::clock::Now;
use crate::setting::{DurationSetting, SharedDuration};

/// Bounds each call by a deadline and stamps it on the request.
///
/// See the [module documentation](super).
///
/// # Cost
/// One clock read and one timer per call; nothing is boxed.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: DurationSetting,
}

impl<S> Deadline<S> {
    /// Bounds calls to `inner` that carry no deadline of their own by `default`.
    pub const fn new(inner: S, default: Duration) -> Self {
        Deadline::from_setting(inner, DurationSetting::Fixed(default))
    }

    /// Bounds calls to `inner` that carry no deadline of their own by `default`, read on
    /// every call (see [`SharedDuration`]).
    pub fn shared(inner: S, default: SharedDuration) -> Self {
        Deadline::from_setting(inner, DurationSetting::Shared(default))
    }

    pub(crate) const fn from_setting(inner: S, default: DurationSetting) -> Self {
        Deadline { inner, default }
    }

    /// The deadline a call gets when its request carries none (now).
    pub fn default_deadline(&self) -> Duration {
        self.default.get()
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

impl<S, Req> Service<Req> for Deadline<S>
where
    S: Service<Req>,
    S::Error: From<DeadlineExceeded>,
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
        // Shared with the layers below while this `call` runs (see `clock`).
        let clock = Now::read();
        let now = clock.at();
        let at = match request.deadline() {
            Some(own) => own,
            None => {
                let at = now + self.default.get();
                request.set_deadline(at);
                at
            }
        };
        let total = at.saturating_duration_since(now);
        if total.is_zero() {
            return ResponseFuture::expired(DeadlineExceeded::new(total, Some(0)));
        }
        let exceeded = DeadlineExceeded::new(total, None);
        ResponseFuture::new(self.inner.call(request), at, exceeded)
    }
}
