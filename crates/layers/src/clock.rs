//! One clock reading per call, shared by the layers the call passes through at once.
//!
//! The deadline, the retry layer (its budget and deadline) and the attempt timeout each need
//! "now" when a call starts. Reading the clock is most of their cost (~20 ns each on a VM), and
//! in a stack they run within nanoseconds of each other: the outermost one reads the clock and
//! the others reuse that reading.
//!
//! The reading is shared only while the reader's `call` is on this thread's stack: it is kept
//! in a thread-local for the length of the reader's [`Now`] guard, which the reader holds across
//! its `inner.call(..)`. A layer below whose `call` runs inside that — directly, as
//! `ServiceBuilder` composes them — gets it. A layer that defers its inner `call` (a
//! `tower::buffer` worker, a concurrency limit that waits in its future, any `async` layer)
//! calls it later from another stack, where the thread-local is empty, so the next layer reads
//! the clock afresh: a reading never goes stale behind a queue. Retries call the inner service
//! from the retry future's `poll`, so each attempt reads the clock again too.
//!
//! Layers of your own that need the time a call starts can take part: read [`Now`] in `call`
//! and keep it until the inner service's `call` has returned.
//!
//! ```
//! use std::task::{Context, Poll};
//! use qdrant_tower_layers::clock::Now;
//! use tower::Service;
//!
//! /// Stamps each request with the instant its call started.
//! #[derive(Clone)]
//! struct Stamp<S>(S);
//!
//! impl<S: Service<(tokio::time::Instant, u32)>> Service<u32> for Stamp<S> {
//!     type Response = S::Response;
//!     type Error = S::Error;
//!     type Future = S::Future;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
//!         self.0.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, request: u32) -> S::Future {
//!         // The reading of a layer above whose `call` is running, or a fresh one that the
//!         // layers below share until `now` is dropped, after `self.0.call` returned.
//!         let now = Now::read();
//!         self.0.call((now.at(), request))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tower::ServiceExt;
//! let inner = tower::service_fn(|(at, n): (tokio::time::Instant, u32)| async move {
//!     Ok::<_, std::convert::Infallible>((at, n))
//! });
//! let (at, n) = Stamp(inner).oneshot(7).await.unwrap();
//! assert!(at <= tokio::time::Instant::now());
//! assert_eq!(n, 7);
//! # }
//! ```

use std::cell::Cell;
use std::marker::PhantomData;

use tokio::time::Instant;

thread_local! {
    static READING: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// "Now" for a call being started: the reading of an enclosing `call` on this thread, or a
/// fresh one that this guard shares until it is dropped. Hold it across the inner service's
/// `call`, and no longer (see the [module docs](self)). It is not `Send`: held across an
/// `.await`, it would share its reading with every task that ran on the thread meanwhile, so a
/// future that holds it cannot be spawned on a multi-threaded runtime.
///
/// ```compile_fail
/// fn spawnable<T: Send>(_: T) {}
/// spawnable(async {
///     let now = qdrant_tower_layers::clock::Now::read();
///     std::future::ready(()).await;
///     drop(now);
/// });
/// ```
#[must_use = "the reading is shared only while the guard lives"]
#[derive(Debug)]
pub struct Now {
    at: Instant,
    owner: bool,
    // Not `Send`: the reading belongs to this thread's stack (see above).
    _not_send: PhantomData<*const ()>,
}

impl Now {
    /// The reading of an enclosing `call` on this thread, or a fresh one shared from here on
    /// (Tokio's clock: paused and advanced with it in tests).
    #[inline]
    pub fn read() -> Now {
        READING.with(|reading| match reading.get() {
            Some(at) => Now {
                at,
                owner: false,
                _not_send: PhantomData,
            },
            None => {
                let at = Instant::now();
                reading.set(Some(at));
                Now {
                    at,
                    owner: true,
                    _not_send: PhantomData,
                }
            }
        })
    }

    /// The instant read.
    #[inline]
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl Drop for Now {
    #[inline]
    fn drop(&mut self) {
        if self.owner {
            READING.with(|reading| reading.set(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reading_is_shared_only_while_its_guard_lives() {
        let outer = Now::read();
        tokio::time::advance(Duration::from_secs(1)).await;
        // Inside the outer guard: the same reading (the layers below in one `call`).
        let inner = Now::read();
        assert_eq!(inner.at(), outer.at());
        drop(inner);
        // An inner guard ending does not end the outer's sharing.
        assert_eq!(Now::read().at(), outer.at());
        let started = outer.at();
        drop(outer);
        // Afterwards (a deferred call, a retry from `poll`): a fresh reading.
        let later = Now::read();
        assert_eq!(later.at(), started + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_does_not_cross_threads() {
        let outer = Now::read();
        tokio::time::advance(Duration::from_secs(1)).await;
        let handle = tokio::runtime::Handle::current();
        let other = std::thread::spawn(move || {
            let _runtime = handle.enter();
            Now::read().at()
        })
        .join()
        .unwrap();
        assert_eq!(other, outer.at() + Duration::from_secs(1));
    }
}
