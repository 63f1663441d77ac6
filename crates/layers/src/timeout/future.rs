//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::timer::Timer;

use super::AttemptTimedOut;

pin_project! {
    /// The [`Future`] returned by an [`AttemptTimeout`](super::AttemptTimeout) service: the
    /// attempt, or [`AttemptTimedOut`] when its limit passes first.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        timed_out: AttemptTimedOut,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            future: F,
            #[pin]
            timer: Timer,
        },
        // The deadline had passed before the attempt started: nothing was sent.
        Expired,
        Done,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, at: Instant, timed_out: AttemptTimedOut) -> Self {
        ResponseFuture {
            state: State::Running {
                future,
                timer: Timer::Unarmed { at },
            },
            timed_out,
        }
    }

    pub(crate) fn expired(timed_out: AttemptTimedOut) -> Self {
        ResponseFuture {
            state: State::Expired,
            timed_out,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<AttemptTimedOut>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Running { future, timer } => {
                if let Poll::Ready(output) = future.poll(cx) {
                    return Poll::Ready(output);
                }
                if timer.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                tracing::debug!(limit = ?this.timed_out.limit, by_deadline = this.timed_out.by_deadline, "attempt timed out: cancelled");
            }
            StateProj::Expired => {}
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
        // Drop the attempt in flight now rather than with the future.
        this.state.set(State::Done);
        Poll::Ready(Err(this.timed_out.clone().into()))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("limit", &self.timed_out.limit)
            .finish_non_exhaustive()
    }
}
