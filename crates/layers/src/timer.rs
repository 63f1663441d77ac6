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
