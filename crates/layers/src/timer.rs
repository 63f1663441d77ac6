//! A timer armed only when it is first needed.
//!
//! Creating a Tokio `Sleep` reaches for the runtime's time driver; most calls finish before
//! their deadline is ever polled, so the layers keep just the instant until the inner future
//! first returns `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pin_project! {
    #[project = TimerProj]
    pub(crate) enum Timer {
        Unarmed { at: Instant },
        Armed {
            #[pin]
            sleep: Sleep,
        },
    }
}

impl Timer {
    /// The instant the timer fires.
    pub(crate) fn at(&self) -> Instant {
        match self {
            Timer::Unarmed { at } => *at,
            Timer::Armed { sleep } => sleep.deadline(),
        }
    }

    /// Ready once the instant has passed; otherwise arms the timer (if not yet) so the task
    /// is woken then.
    pub(crate) fn poll_expired(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let TimerProj::Unarmed { at } = self.as_mut().project() {
            let at = *at;
            self.set(Timer::Armed {
                sleep: tokio::time::sleep_until(at),
            });
        }
        match self.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx),
            TimerProj::Unarmed { .. } => unreachable!("armed above"),
        }
    }
}

pin_project! {
    /// A future bounded by an instant: the inner future's output, or `error` (converted into the
    /// inner error type) once the instant passes, dropping the inner future then. The body of
    /// the deadline and attempt-timeout futures.
    #[project = BoundedProj]
    pub(crate) enum Bounded<F, X> {
        Running {
            #[pin]
            future: F,
            #[pin]
            timer: Timer,
            error: X,
        },
        // The instant had passed before anything started: nothing was sent.
        Expired { error: X },
        Done,
    }
}

impl<F, X> Bounded<F, X> {
    pub(crate) fn new(future: F, at: Instant, error: X) -> Self {
        Bounded::Running {
            future,
            timer: Timer::Unarmed { at },
            error,
        }
    }

    pub(crate) fn expired(error: X) -> Self {
        Bounded::Expired { error }
    }
}

impl<F, T, E, X> Future for Bounded<F, X>
where
    F: Future<Output = Result<T, E>>,
    E: From<X>,
    X: Clone + std::fmt::Display,
{
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let error = match self.as_mut().project() {
            BoundedProj::Running {
                future,
                timer,
                error,
            } => {
                if let Poll::Ready(output) = future.poll(cx) {
                    self.set(Bounded::Done);
                    return Poll::Ready(output);
                }
                if timer.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                tracing::debug!(%error, "time is up: the call in flight is cancelled");
                error.clone()
            }
            BoundedProj::Expired { error } => error.clone(),
            BoundedProj::Done => panic!("ResponseFuture polled after completion"),
        };
        // Drop the call in flight now rather than with the future.
        self.set(Bounded::Done);
        Poll::Ready(Err(error.into()))
    }
}
