//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::state::Guard;
use crate::Classify;

pin_project! {
    /// The [`Future`] returned by a [`CircuitBreaker`](super::CircuitBreaker) service.
    ///
    /// Either the inner service's future, which reports its outcome to the breaker when it
    /// completes (and, if dropped first, hands back its half-open permit), or an immediate
    /// rejection.
    #[derive(Debug)]
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, E> {
        Called {
            #[pin]
            future: F,
            guard: Option<Guard>,
        },
        Rejected {
            error: Option<E>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    #[inline]
    pub(crate) fn called(future: F, guard: Option<Guard>) -> Self {
        ResponseFuture {
            state: State::Called { future, guard },
        }
    }

    #[inline]
    pub(crate) fn rejected(error: E) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<T, E>>,
    E: Classify,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, guard } => {
                let result = ready!(future.poll(cx));
                if let Some(guard) = guard {
                    guard.finish(&result);
                }
                Poll::Ready(result)
            }
            StateProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
