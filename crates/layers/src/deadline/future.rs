//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::timer::Timer;

use super::DeadlineExceeded;

pin_project! {
    /// The [`Future`] returned by a [`Deadline`](super::Deadline) service: the inner call, or
    /// [`DeadlineExceeded`] when the deadline passes first.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        total: Duration,
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
        // The deadline had passed before the call started: nothing was sent.
        Expired,
        Done,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, at: Instant, total: Duration) -> Self {
        ResponseFuture {
            state: State::Running {
                future,
                timer: Timer::Unarmed { at },
            },
            total,
        }
    }

    pub(crate) fn expired(total: Duration) -> Self {
        ResponseFuture {
            state: State::Expired,
            total,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<DeadlineExceeded>,
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
                tracing::debug!(deadline = ?this.total, "deadline passed: call cancelled");
            }
            StateProj::Expired => {
                this.state.set(State::Done);
                return Poll::Ready(Err(DeadlineExceeded::new(*this.total, Some(0)).into()));
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
        // Drop the call in flight now rather than with the future.
        this.state.set(State::Done);
        Poll::Ready(Err(DeadlineExceeded::new(*this.total, None).into()))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("deadline", &self.total)
            .finish_non_exhaustive()
    }
}
