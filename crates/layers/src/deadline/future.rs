//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::DeadlineExceeded;
use crate::timer::Bounded;

pin_project! {
    /// The [`Future`] returned by a [`Deadline`](super::Deadline) service: the inner call, or
    /// [`DeadlineExceeded`] when the deadline passes first.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Bounded<F, DeadlineExceeded>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, at: Instant, error: DeadlineExceeded) -> Self {
        ResponseFuture {
            inner: Bounded::new(future, at, error),
        }
    }

    /// The call is not started: its time had run out already.
    pub(crate) fn expired(error: DeadlineExceeded) -> Self {
        ResponseFuture {
            inner: Bounded::expired(error),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<DeadlineExceeded>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
