//! Hedged reads: when a read has not answered after a delay, send a second attempt; the first
//! answer wins and the other attempt is dropped (cancelled).
//!
//! Opt-in per operation ([`HedgeConfig::operations`]), reads only ([`RequestInfo::is_read`]:
//! a hedged write would be sent twice). The delay is fixed, or a percentile of the hedged
//! operations' recent latencies (so only the slowest calls are hedged), never below a floor.
//! Extra load is bounded by a [`RetryBudget`]: each call deposits, each hedge withdraws, so
//! hedges stay within a share of the calls (plus a small floor per second).
//!
//! The hedge is a clone of the request sent through a clone of the service below. With
//! `QdrantService` below, the clone shares the request's record of the endpoints it went to,
//! so the hedge goes to another endpoint.
//!
//! ```
//! use std::time::Duration;
//! use qdrant_tower_layers::hedge::{HedgeConfig, HedgeLayer};
//!
//! let hedge = HedgeLayer::new(
//!     HedgeConfig::fixed(Duration::from_millis(50)).operations(["search", "query"]),
//! );
//! # drop(hedge);
//! ```
//!
//! # Where
//! Below the retry layer and above the health gate and the breaker: each hedge is an attempt
//! the breaker admits and the attempt timeout bounds, and a hedged call the retry layer sees
//! once.
//!
//! # Metrics
//! `hedge_requests_total{outcome}`: `sent` (a hedge went out), `won` (it answered first),
//! `refused` (the budget said no).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::RequestInfo;
use crate::retry::RetryBudget;

/// When to hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After this long.
    Fixed(Duration),
    /// After this percentile (0–1) of the hedged operations' recent latencies, once
    /// `min_samples` calls were seen (before that, no hedge), never before `floor`.
    Percentile {
        /// The percentile, e.g. 0.95.
        percentile: f64,
        /// Calls seen before hedging starts.
        min_samples: u64,
        /// The shortest delay.
        floor: Duration,
    },
}

/// What to hedge, when, and how much.
#[derive(Debug, Clone)]
#[must_use]
pub struct HedgeConfig {
    delay: HedgeDelay,
    operations: Vec<&'static str>,
    budget: RetryBudget,
}

impl HedgeConfig {
    /// Hedge after `delay`.
    pub fn fixed(delay: Duration) -> Self {
        HedgeConfig::with_delay(HedgeDelay::Fixed(delay))
    }

    /// Hedge after the `percentile` of recent latencies (at least 1 ms, after 100 calls).
    pub fn percentile(percentile: f64) -> Self {
        HedgeConfig::with_delay(HedgeDelay::Percentile {
            percentile: percentile.clamp(0.0, 1.0),
            min_samples: 100,
            floor: Duration::from_millis(1),
        })
    }

    /// Hedge after `delay`; every read operation, a budget of 10 % of calls plus 1 per
    /// second.
    pub fn with_delay(delay: HedgeDelay) -> Self {
        HedgeConfig {
            delay,
            operations: Vec::new(),
            budget: RetryBudget::new(Duration::from_secs(10), 1, 0.1),
        }
    }

    /// Hedge only these operations (by [`RequestInfo::operation`] name); by default every
    /// read.
    pub fn operations(mut self, operations: impl IntoIterator<Item = &'static str>) -> Self {
        self.operations = operations.into_iter().collect();
        self
    }

    /// The budget hedges draw on (share it with other layers to bound them together).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The delay setting.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }
}

/// Latencies in log-spaced buckets (×1.25 from 100 µs), halved every period so that they
/// follow recent calls. Lock-free.
struct Latencies {
    buckets: Box<[AtomicU64]>,
    seen: AtomicU64,
    epoch: Instant,
    halved_at: AtomicU64,
}

const BUCKETS: usize = 80;
const FIRST_BUCKET_US: f64 = 100.0;
const GROWTH: f64 = 1.25;
const HALVE_EVERY: Duration = Duration::from_secs(10);

impl Latencies {
    fn new() -> Self {
        Latencies {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            seen: AtomicU64::new(0),
            epoch: Instant::now(),
            halved_at: AtomicU64::new(0),
        }
    }

    fn bucket(latency: Duration) -> usize {
        let us = latency.as_micros() as f64;
        if us <= FIRST_BUCKET_US {
            return 0;
        }
        (((us / FIRST_BUCKET_US).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
    }

    fn upper(bucket: usize) -> Duration {
        Duration::from_micros((FIRST_BUCKET_US * GROWTH.powi(bucket as i32)) as u64)
    }

    fn record(&self, latency: Duration, now: Instant) {
        let period = now.saturating_duration_since(self.epoch).as_secs() / HALVE_EVERY.as_secs();
        let last = self.halved_at.load(Ordering::Relaxed);
        if period > last
            && self
                .halved_at
                .compare_exchange(last, period, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            for bucket in self.buckets.iter() {
                let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n / 2));
            }
        }
        self.buckets[Self::bucket(latency)].fetch_add(1, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency under which `percentile` of the recent calls ended (the bucket's upper
    /// bound).
    fn percentile(&self, percentile: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = (percentile * total as f64).ceil().max(1.0) as u64;
        let mut running = 0;
        for (bucket, count) in counts.iter().enumerate() {
            running += count;
            if running >= wanted {
                return Some(Self::upper(bucket));
            }
        }
        Some(Self::upper(BUCKETS - 1))
    }
}

struct Shared {
    config: HedgeConfig,
    latencies: Latencies,
    sent: metrics::Counter,
    won: metrics::Counter,
    refused: metrics::Counter,
}

impl Shared {
    /// The delay after which to hedge a call now, if any.
    fn delay(&self) -> Option<Duration> {
        match self.config.delay {
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                floor,
            } => {
                if self.latencies.seen.load(Ordering::Relaxed) < min_samples {
                    return None;
                }
                Some(self.latencies.percentile(percentile)?.max(floor))
            }
        }
    }
}

/// Hedges chosen reads; see the [module documentation](self).
#[derive(Clone)]
pub struct HedgeLayer {
    shared: Option<Arc<Shared>>,
}

impl HedgeLayer {
    /// Hedges as `config` says.
    pub fn new(config: HedgeConfig) -> Self {
        metrics::describe_counter!(
            "hedge_requests_total",
            "Hedged attempts: sent, won (answered first), refused by the budget"
        );
        HedgeLayer {
            shared: Some(Arc::new(Shared {
                config,
                latencies: Latencies::new(),
                sent: metrics::counter!("hedge_requests_total", "outcome" => "sent"),
                won: metrics::counter!("hedge_requests_total", "outcome" => "won"),
                refused: metrics::counter!("hedge_requests_total", "outcome" => "refused"),
            })),
        }
    }

    /// No hedging: a pass-through.
    pub fn none() -> Self {
        HedgeLayer { shared: None }
    }

    /// Hedges the budget refused so far.
    pub fn refusals(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.config.budget.refusals())
    }
}

impl fmt::Debug for HedgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("config", &self.shared.as_ref().map(|s| &s.config))
            .finish()
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Hedge<S> {
        Hedge {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`HedgeLayer`].
#[derive(Clone)]
pub struct Hedge<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S: fmt::Debug> fmt::Debug for Hedge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("hedging", &self.shared.is_some())
            .finish()
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, Req> Service<Req> for Hedge<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    Req: RequestInfo + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HedgeFuture<S::Future, S::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let hedged = self.shared.as_ref().filter(|shared| {
            request.is_read()
                && (shared.config.operations.is_empty()
                    || shared.config.operations.contains(&request.operation()))
        });
        let Some(shared) = hedged else {
            return HedgeFuture {
                primary: self.inner.call(request),
                timer: None,
                second: None,
                hedge: None,
                primary_failed: None,
                started: None,
            };
        };
        shared.config.budget.deposit();
        let delay = shared.delay();
        let clock = crate::clock::Now::read();
        let started = clock.at();
        let later = delay.map(|_| {
            let service = self.inner.clone();
            let request = request.clone();
            let send: Box<dyn FnOnce() -> BoxFuture<S::Response, S::Error> + Send> =
                Box::new(move || {
                    let mut service = service;
                    Box::pin(async move {
                        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                        service.call(request).await
                    })
                });
            (send, Arc::clone(shared))
        });
        HedgeFuture {
            primary: self.inner.call(request),
            timer: delay.map(|delay| Box::pin(tokio::time::sleep_until(started + delay))),
            second: None,
            hedge: later,
            primary_failed: None,
            started: Some((started, Arc::clone(shared))),
        }
    }
}

/// What sends the hedge, and the layer's state.
type Later<T, E> = (Box<dyn FnOnce() -> BoxFuture<T, E> + Send>, Arc<Shared>);

pin_project! {
    /// The future of a [`Hedge`] call: the first attempt and, after the delay, the hedge.
    pub struct HedgeFuture<F, T, E> {
        #[pin]
        primary: F,
        timer: Option<Pin<Box<Sleep>>>,
        second: Option<BoxFuture<T, E>>,
        hedge: Option<Later<T, E>>,
        primary_failed: Option<E>,
        started: Option<(Instant, Arc<Shared>)>,
    }
}

impl<F, T, E> Future for HedgeFuture<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The hedge goes out when the timer fires (and the budget allows).
        if let Some(timer) = this.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            *this.timer = None;
            if let Some((send, shared)) = this.hedge.take() {
                if shared.config.budget.withdraw() {
                    shared.sent.increment(1);
                    *this.second = Some(send());
                } else {
                    shared.refused.increment(1);
                }
            }
        }
        if this.primary_failed.is_none() {
            match this.primary.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) => {
                    if let Some((started, shared)) = this.started.take() {
                        shared.latencies.record(started.elapsed(), Instant::now());
                    }
                    return Poll::Ready(Ok(response));
                }
                Poll::Ready(Err(error)) => {
                    if this.second.is_none() {
                        // No hedge out: the error is the call's (the retry layer decides).
                        return Poll::Ready(Err(error));
                    }
                    *this.primary_failed = Some(error);
                }
                Poll::Pending => {}
            }
        }
        if let Some(second) = this.second.as_mut() {
            match second.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) => {
                    if let Some((started, shared)) = this.started.take() {
                        shared.won.increment(1);
                        shared.latencies.record(started.elapsed(), Instant::now());
                    }
                    return Poll::Ready(Ok(response));
                }
                Poll::Ready(Err(error)) => {
                    *this.second = None;
                    if let Some(primary) = this.primary_failed.take() {
                        // Both failed: the first attempt's error stands.
                        drop(error);
                        return Poll::Ready(Err(primary));
                    }
                    // The primary may still answer.
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

impl<F, T, E> fmt::Debug for HedgeFuture<F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeFuture")
            .field("hedged", &self.second.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_log_buckets() {
        let l = Latencies::new();
        let now = l.epoch;
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms), now);
        }
        let p50 = l.percentile(0.5).unwrap();
        let p95 = l.percentile(0.95).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(63),
            "{p50:?}"
        );
        assert!(
            p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(119),
            "{p95:?}"
        );
        // Ten seconds on, the old counts weigh half.
        for _ in 0..100 {
            l.record(Duration::from_millis(1), now + Duration::from_secs(10));
        }
        assert!(l.percentile(0.5).unwrap() <= Duration::from_millis(2));
    }
}
