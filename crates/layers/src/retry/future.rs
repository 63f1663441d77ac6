//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::timer::Timer;
use tower_service::Service;
use tracing::Span;

use super::observe::attempt_span;
use super::policy::{BackoffState, Decision, Stop};
use super::service::CallShared;
use crate::deadline::DeadlineExceeded;
use crate::{Classify, RequestInfo};

pin_project! {
    /// The [`Future`] returned by a [`Retry`](super::Retry) service.
    ///
    /// Runs attempts one after the other: the attempt in flight, then a backoff sleep, then
    /// the inner service's readiness, then the next attempt. With a deadline it also holds
    /// one timer for the whole call. Dropping it cancels the attempt in flight.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        #[pin]
        deadline: DeadlineTimer,
        call: CallState<S, Req, S::Error>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called {
            #[pin]
            future: F,
        },
        // Backing off before the next attempt.
        Waiting {
            #[pin]
            sleep: Sleep,
        },
        // Waiting for the inner service to be ready for the next attempt.
        Retrying,
        // The deadline passed and the attempt was dropped.
        Done,
    }
}

pin_project! {
    #[project = DeadlineProj]
    enum DeadlineTimer {
        Set {
            #[pin]
            timer: Timer,
            total: Duration,
        },
        Unset,
    }
}

impl DeadlineTimer {
    fn at(&self) -> Option<Instant> {
        match self {
            DeadlineTimer::Set { timer, .. } => Some(timer.at()),
            DeadlineTimer::Unset => None,
        }
    }

    /// Whether the deadline has passed; when not, the task is woken when it does.
    fn poll_passed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        match self.project() {
            DeadlineProj::Set { timer, .. } => timer.poll_expired(cx).is_ready(),
            DeadlineProj::Unset => false,
        }
    }

    fn total(&self) -> Duration {
        match self {
            DeadlineTimer::Set { total, .. } => *total,
            DeadlineTimer::Unset => Duration::MAX,
        }
    }
}

/// Everything about the call that need not be pinned.
struct CallState<S, Req, E> {
    // The service retries run on: none until the first retry.
    service: Option<S>,
    request: Req,
    shared: Arc<CallShared<S>>,
    attempt: u32,
    // Attempts started (the retry counter moves before the next attempt starts), and whether
    // any failed attempt so far may have reached the server: what the call's error reports.
    started: u32,
    sent: bool,
    backoff: Option<BackoffState>,
    last_error: Option<E>,
    span: Span,
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        request: Req,
        shared: Arc<CallShared<S>>,
        span: Span,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        let deadline = match deadline {
            Some((at, total)) => DeadlineTimer::Set {
                timer: Timer::Unarmed { at },
                total,
            },
            None => DeadlineTimer::Unset,
        };
        ResponseFuture {
            state: State::Called { future },
            deadline,
            call: CallState {
                service: None,
                request,
                shared,
                attempt: 1,
                started: 1,
                sent: false,
                backoff: None,
                last_error: None,
                span,
            },
        }
    }
}

impl<S, Req> CallState<S, Req, S::Error>
where
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: RequestInfo + Clone,
{
    /// After a failed attempt: the delay before the next one, or the error to return.
    fn after_failure(
        &mut self,
        error: S::Error,
        deadline: Option<Instant>,
    ) -> Result<Duration, S::Error> {
        let kind = error.kind();
        self.span.record("error.type", kind.as_str());
        let shared = &*self.shared.retry;
        let backoff = self
            .backoff
            .get_or_insert_with(|| BackoffState::new(shared.next_seed()));
        let delay = match shared.policy.load().decide(
            &self.request,
            &error,
            self.attempt,
            backoff,
            deadline,
        ) {
            Decision::Retry(delay) => delay,
            Decision::Stop(reason) => {
                if reason == Stop::Deadline {
                    tracing::debug!(
                        parent: &self.span,
                        retry_after = ?error.retry_after(),
                        "not retrying: the next attempt could not start before the deadline"
                    );
                } else {
                    tracing::trace!(parent: &self.span, reason = reason.as_str(), "not retrying");
                }
                return Err(self.finish(error));
            }
        };
        if let Some(budget) = &shared.budget
            && !budget.withdraw()
        {
            shared.metrics.budget_exhausted[kind as usize].increment(1);
            tracing::warn!(
                parent: &self.span,
                error_kind = kind.as_str(),
                "retry budget exhausted: returning the error without retrying"
            );
            return Err(self.finish(error));
        }
        shared.metrics.retries[kind as usize].increment(1);
        self.attempt += 1;
        self.span = attempt_span(&self.request, self.attempt, delay);
        self.sent |= error.maybe_sent();
        self.last_error = Some(error);
        Ok(delay)
    }

    /// The service for the next attempt, cloned from the spare at the first retry.
    fn service(&mut self) -> &mut S {
        retry_service(&mut self.service, &self.shared)
    }

    fn start_attempt(&mut self) -> S::Future {
        self.last_error = None;
        self.started += 1;
        let request = self.request.clone();
        // Borrows the fields apart: the span stays entered while the service is called.
        let service = retry_service(&mut self.service, &self.shared);
        let _entered = self.span.enter();
        service.call(request)
    }

    fn give_up(&mut self) -> S::Error {
        tracing::debug!(parent: &self.span, "deadline passed before the inner service was ready");
        let error = self
            .last_error
            .take()
            .expect("a retry is only pending after a failed attempt");
        self.finish(error)
    }

    /// The error the call ends with, carrying what the whole call did (see
    /// [`Classify::record_attempts`]).
    fn finish(&self, mut error: S::Error) -> S::Error {
        self.shared.retry.metrics.attempts.record(self.started);
        let maybe_sent = self.sent || error.maybe_sent();
        error.record_attempts(self.started, maybe_sent);
        error
    }
}

/// A call's service for retries, cloned from the spare the first time it is needed.
fn retry_service<'a, S: Clone>(service: &'a mut Option<S>, shared: &CallShared<S>) -> &'a mut S {
    service.get_or_insert_with(|| shared.service())
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Classify + From<DeadlineExceeded>,
    Req: RequestInfo + Clone,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let polled = {
                        let _entered = this.call.span.enter();
                        future.poll(cx)
                    };
                    let error = match polled {
                        Poll::Ready(Ok(response)) => {
                            let call = &*this.call;
                            call.shared.retry.metrics.attempts.record(call.started);
                            return Poll::Ready(Ok(response));
                        }
                        Poll::Ready(Err(error)) => error,
                        Poll::Pending => {
                            if this.deadline.as_mut().poll_passed(cx) {
                                let call = &*this.call;
                                call.shared.retry.metrics.deadline_exceeded.increment(1);
                                call.span.record("error.type", "timeout");
                                tracing::debug!(parent: &call.span, "deadline passed: attempt cancelled");
                                let error = DeadlineExceeded::new(
                                    this.deadline.total(),
                                    Some(call.attempt),
                                );
                                // Drop the attempt now rather than with the future.
                                this.state.set(State::Done);
                                return Poll::Ready(Err(this.call.finish(error.into())));
                            }
                            return Poll::Pending;
                        }
                    };
                    let delay = match this.call.after_failure(error, this.deadline.at()) {
                        Ok(delay) => delay,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    if delay.is_zero() {
                        this.state.set(State::Retrying);
                    } else {
                        this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(delay),
                        });
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    match this.call.service().poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            return Poll::Ready(Err(this.call.finish(error)));
                        }
                        Poll::Pending => {
                            if this.deadline.as_mut().poll_passed(cx) {
                                return Poll::Ready(Err(this.call.give_up()));
                            }
                            return Poll::Pending;
                        }
                    }
                    if this.deadline.at().is_some_and(|at| Instant::now() >= at) {
                        return Poll::Ready(Err(this.call.give_up()));
                    }
                    let future = this.call.start_attempt();
                    this.state.set(State::Called { future });
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.call.attempt)
            .field("deadline", &self.deadline.at())
            .finish_non_exhaustive()
    }
}
