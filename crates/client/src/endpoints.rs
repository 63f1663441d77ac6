//! Several endpoints: which one carries a call (round-robin or power of two choices by load),
//! outlier detection per endpoint (Envoy-style ejection), and failover of an attempt to an
//! endpoint the request has not tried yet.
//!
//! # Outlier detection
//! An endpoint is *ejected* — skipped by new calls — when
//! - [`consecutive_failures`](OutlierDetection::consecutive_failures) calls in a row failed
//!   with a kind that counts against the backend (`Connect`, `Timeout`, `Unavailable`,
//!   `Internal`: [`ErrorKind::counts_as_failure`]), or
//! - at the end of an [`interval`](OutlierDetection::interval), its success rate is an outlier:
//!   below the mean of the endpoints' rates by more than
//!   [`stdev_factor`](OutlierDetection::stdev_factor) standard deviations (counted among
//!   endpoints with at least [`request_volume`](OutlierDetection::request_volume) calls in the
//!   interval, and only when [`minimum_hosts`](OutlierDetection::minimum_hosts) of them do).
//!
//! One endpoint among `n` can be at most `(n − 1) / √n` standard deviations below the mean,
//! so the detector can only fire when that exceeds the factor: with the default 1.9 (Envoy's),
//! from six endpoints on; for a three-node cluster set the factor below 1.15 (e.g. 1.0) —
//! consecutive failures work at any size.
//!
//! It stays out for `base_ejection × times ejected` (at most `max_ejection`), then returns on
//! its own; each interval it is in and not failing takes one off its count. Never more than
//! [`max_ejected_share`](OutlierDetection::max_ejected_share) of the endpoints are out at once
//! (at least one may be, with two or more endpoints; a single endpoint is never ejected — the
//! circuit breaker above speaks for it).
//!
//! # Failover
//! A request remembers (shared by its clones) which endpoints its attempts went to. The next
//! attempt — the retry layer's — goes to an endpoint not yet tried and not ejected, if there is
//! one; else to one not yet tried; else to any. A read retried after `Connect` or `Unavailable`
//! therefore lands on another endpoint, within the retry policy and the call's deadline.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use qdrant_tower_layers::ErrorKind;
use tokio::time::Instant;

use crate::pool::EndpointPool;

/// How calls are spread over the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Balance {
    /// In turn (skipping ejected and already-tried endpoints).
    #[default]
    RoundRobin,
    /// Power of two choices: of two endpoints drawn at random, the one with fewer calls in
    /// flight (tower's `p2c` by load, on this crate's own in-flight counts).
    PowerOfTwoChoices,
}

/// Outlier detection per endpoint; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// Failures in a row that eject an endpoint. Default 5; 0 turns this detector off.
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one is longer by as much. Default 30 s.
    pub base_ejection: Duration,
    /// The longest ejection. Default 300 s.
    pub max_ejection: Duration,
    /// The largest share of endpoints out at once (0–1). Default 0.5.
    pub max_ejected_share: f64,
    /// How often success rates are compared (and ejection counts decay). Default 10 s.
    pub interval: Duration,
    /// Endpoints with enough calls needed to compare success rates. Default 5 (Envoy's); 0
    /// turns the success-rate detector off.
    pub minimum_hosts: usize,
    /// Calls in an interval for an endpoint's success rate to count. Default 50.
    pub request_volume: u64,
    /// How many standard deviations below the mean is an outlier. Default 1.9.
    pub stdev_factor: f64,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
            interval: Duration::from_secs(10),
            minimum_hosts: 5,
            request_volume: 50,
            stdev_factor: 1.9,
        }
    }
}

impl OutlierDetection {
    /// No ejection at all.
    pub fn disabled() -> Self {
        OutlierDetection {
            consecutive_failures: 0,
            minimum_hosts: 0,
            ..OutlierDetection::default()
        }
    }

    /// The same, ejecting after `failures` in a row.
    pub fn with_consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = failures;
        self
    }

    /// The same, with these ejection lengths (first, longest).
    pub fn with_ejection(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection = base;
        self.max_ejection = max.max(base);
        self
    }

    /// The same, with at most this share of endpoints out at once.
    pub fn with_max_ejected_share(mut self, share: f64) -> Self {
        self.max_ejected_share = share;
        self
    }

    /// The same, comparing success rates every `interval` among at least `minimum_hosts`
    /// endpoints with `request_volume` calls each.
    pub fn with_success_rate(
        mut self,
        interval: Duration,
        minimum_hosts: usize,
        request_volume: u64,
    ) -> Self {
        self.interval = interval;
        self.minimum_hosts = minimum_hosts;
        self.request_volume = request_volume;
        self
    }

    /// The same, with an outlier `factor` standard deviations below the mean.
    pub fn with_stdev_factor(mut self, factor: f64) -> Self {
        self.stdev_factor = factor;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.max_ejected_share) {
            return Err(format!(
                "max_ejected_share must be within 0 and 1, not {}",
                self.max_ejected_share
            ));
        }
        if self.base_ejection.is_zero() || self.interval.is_zero() {
            return Err("base_ejection and interval must be greater than zero".into());
        }
        if !(self.stdev_factor.is_finite() && self.stdev_factor >= 0.0) {
            return Err(format!(
                "stdev_factor must be a finite, non-negative number, not {}",
                self.stdev_factor
            ));
        }
        Ok(())
    }
}

/// One endpoint's outlier state, lock-free: read on every pick. Each [`EndpointPool`] holds
/// its own.
pub(crate) struct EndpointHealth {
    /// When the ejection ends, in nanoseconds after the service's epoch; 0: not ejected.
    ejected_until: AtomicU64,
    consecutive: AtomicU32,
    times_ejected: AtomicU32,
    ejections: AtomicU64,
    window_ok: AtomicU64,
    window_failed: AtomicU64,
    /// Taken out of rotation for good by discovery (the peer left the cluster); it comes back
    /// if the peer is listed again.
    retired: AtomicBool,
    /// The Qdrant peer id the endpoint answered with (discovery); 0 while unknown.
    peer_id: AtomicU64,
    ejected_gauge: metrics::Gauge,
    ejections_total: metrics::Counter,
}

impl EndpointHealth {
    pub(crate) fn new(url: &str) -> Self {
        metrics::describe_gauge!(
            "qdrant_endpoint_ejected",
            "1 while outlier detection keeps the Qdrant endpoint out of rotation"
        );
        metrics::describe_counter!(
            "qdrant_endpoint_ejections_total",
            "Ejections of the Qdrant endpoint by outlier detection"
        );
        EndpointHealth {
            ejected_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            window_ok: AtomicU64::new(0),
            window_failed: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            peer_id: AtomicU64::new(0),
            ejected_gauge: metrics::gauge!("qdrant_endpoint_ejected", "endpoint" => url.to_owned()),
            ejections_total: metrics::counter!("qdrant_endpoint_ejections_total", "endpoint" => url.to_owned()),
        }
    }

    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn set_retired(&self, retired: bool) {
        self.retired.store(retired, Ordering::Release);
    }

    /// The Qdrant peer id it answered with, once known.
    pub(crate) fn peer_id(&self) -> Option<u64> {
        Some(self.peer_id.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    pub(crate) fn set_peer_id(&self, id: u64) {
        self.peer_id.store(id, Ordering::Release);
    }
}

/// A service's endpoints: slots filled in order and never emptied, so that an endpoint keeps
/// its index for good (a request's record of the endpoints it tried holds indices). Reading
/// is lock-free; adding (discovery) takes a lock.
pub(crate) struct EndpointSet {
    slots: Box<[OnceLock<Arc<EndpointPool>>]>,
    len: AtomicUsize,
    adding: Mutex<()>,
}

impl EndpointSet {
    /// A set of `pools` with room for `capacity` endpoints in all.
    pub(crate) fn new(pools: Vec<Arc<EndpointPool>>, capacity: usize) -> Self {
        let capacity = capacity.max(pools.len());
        let len = pools.len();
        let slots: Box<[OnceLock<Arc<EndpointPool>>]> =
            (0..capacity).map(|_| OnceLock::new()).collect();
        for (slot, pool) in slots.iter().zip(pools) {
            let _ = slot.set(pool);
        }
        EndpointSet {
            slots,
            len: AtomicUsize::new(len),
            adding: Mutex::new(()),
        }
    }

    /// How many endpoints there are (retired ones included).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// How many there can be.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Endpoint `index`; the first one for an index past the end (never the case for an
    /// index read from this set).
    pub(crate) fn get(&self, index: usize) -> &Arc<EndpointPool> {
        match self.slots.get(index).and_then(OnceLock::get) {
            Some(pool) => pool,
            None => self.first(),
        }
    }

    fn first(&self) -> &Arc<EndpointPool> {
        // The builder refuses a service without an endpoint, so slot 0 is always set.
        self.slots[0]
            .get()
            .expect("a service has at least one endpoint")
    }

    /// Every endpoint, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<EndpointPool>> {
        self.slots[..self.len()].iter().filter_map(OnceLock::get)
    }

    /// Adds the endpoint `make(index)` builds, if there is room; returns it.
    pub(crate) fn push(
        &self,
        make: impl FnOnce(usize) -> Arc<EndpointPool>,
    ) -> Option<&Arc<EndpointPool>> {
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let index = self.len();
        let slot = self.slots.get(index)?;
        let _ = slot.set(make(index));
        self.len.store(index + 1, Ordering::Release);
        slot.get()
    }

    fn health(&self, index: usize) -> &EndpointHealth {
        &self.get(index).health
    }
}

/// The endpoints' selection and outlier state, shared by a service's clones.
pub(crate) struct Router {
    pub(crate) balance: Balance,
    pub(crate) outlier: OutlierDetection,
    epoch: Instant,
    next: AtomicUsize,
    rng: AtomicU64,
}

impl Router {
    pub(crate) fn new(balance: Balance, outlier: OutlierDetection) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
        Router {
            balance,
            outlier,
            epoch: Instant::now(),
            next: AtomicUsize::new(0),
            rng: AtomicU64::new(seed),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        // +1 so that a time at the epoch itself is not "not ejected".
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    pub(crate) fn is_ejected(&self, health: &EndpointHealth, now: Instant) -> bool {
        let until = health.ejected_until.load(Ordering::Acquire);
        until != 0 && until > self.nanos(now)
    }

    /// Endpoints in rotation (not retired), and how many of them are ejected.
    fn counts(&self, set: &EndpointSet, now: Instant) -> (usize, usize) {
        set.iter()
            .filter(|pool| !pool.health.is_retired())
            .fold((0, 0), |(live, ejected), pool| {
                (
                    live + 1,
                    ejected + usize::from(self.is_ejected(&pool.health, now)),
                )
            })
    }

    /// The endpoint for an attempt that already went to the endpoints in `tried`, by the
    /// balance policy. Retired endpoints are never picked.
    ///
    /// `advance`: whether this pick takes a round-robin turn (a first attempt being sent);
    /// a peek (`poll_ready`), a retry or a hedge does not — they would push the next call's
    /// turn out of order, and with a slow endpoint hedged around, that endpoint would get
    /// every other first attempt instead of one in n.
    pub(crate) fn pick(&self, set: &EndpointSet, tried: u64, advance: bool) -> usize {
        let n = set.len();
        if n == 1 {
            return 0;
        }
        let now = Instant::now();
        let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
        let live = |i: usize| !set.health(i).is_retired();
        let candidates: [&dyn Fn(usize) -> bool; 3] = [
            &|i| live(i) && untried(i) && !self.is_ejected(set.health(i), now),
            &|i| live(i) && untried(i),
            &live,
        ];
        for accept in candidates {
            if let Some(index) = self.choose(set, n, accept, advance) {
                return index;
            }
        }
        0
    }

    fn choose(
        &self,
        set: &EndpointSet,
        n: usize,
        accept: &dyn Fn(usize) -> bool,
        advance: bool,
    ) -> Option<usize> {
        match self.balance {
            Balance::RoundRobin => {
                let start = if advance {
                    self.next.fetch_add(1, Ordering::Relaxed)
                } else {
                    self.next.load(Ordering::Relaxed)
                };
                (0..n).map(|k| (start + k) % n).find(|&i| accept(i))
            }
            Balance::PowerOfTwoChoices => {
                // Two distinct draws among the accepted endpoints, without allocating: count
                // them, draw two ordinals, map the ordinals back to indices.
                let eligible = (0..n).filter(|&i| accept(i)).count();
                let nth = |k: usize| (0..n).filter(|&i| accept(i)).nth(k);
                match eligible {
                    0 => None,
                    1 => nth(0),
                    len => {
                        let r = self.random();
                        let a = (r % len as u64) as usize;
                        let b = (a + 1 + ((r >> 32) % (len as u64 - 1)) as usize) % len;
                        let (a, b) = (nth(a)?, nth(b)?);
                        let load = |i: usize| set.get(i).in_flight();
                        Some(if load(b) < load(a) { b } else { a })
                    }
                }
            }
        }
    }

    /// A xorshift step on a shared state: enough randomness to spread picks.
    fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Counts an attempt's outcome on `pool`: `None` for a success, `Some(kind)` for a
    /// failure (only kinds that count against the backend count).
    pub(crate) fn record(
        &self,
        set: &EndpointSet,
        pool: &EndpointPool,
        outcome: Option<ErrorKind>,
    ) {
        let health = &pool.health;
        match outcome {
            None => {
                health.consecutive.store(0, Ordering::Relaxed);
                health.window_ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(kind) if kind.counts_as_failure() => {
                health.window_failed.fetch_add(1, Ordering::Relaxed);
                let threshold = self.outlier.consecutive_failures;
                let failures = health.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if threshold > 0 && failures >= threshold {
                    self.eject(set, pool, "consecutive failures", Instant::now());
                }
            }
            Some(_) => {}
        }
    }

    /// Ejects `pool` unless it is out already or the share of ejected endpoints (among those
    /// in rotation) is at its bound; returns whether it did.
    fn eject(&self, set: &EndpointSet, pool: &EndpointPool, why: &str, now: Instant) -> bool {
        let health = &pool.health;
        if self.is_ejected(health, now) || health.is_retired() {
            return false;
        }
        let (live, ejected) = self.counts(set, now);
        let allowed = ((self.outlier.max_ejected_share * live as f64).floor() as usize).max(1);
        if live < 2 || ejected >= allowed {
            return false;
        }
        let times = health.times_ejected.fetch_add(1, Ordering::AcqRel) + 1;
        let length = self
            .outlier
            .base_ejection
            .saturating_mul(times)
            .min(self.outlier.max_ejection);
        health
            .ejected_until
            .store(self.nanos(now + length), Ordering::Release);
        health.consecutive.store(0, Ordering::Relaxed);
        health.ejections.fetch_add(1, Ordering::Relaxed);
        health.ejections_total.increment(1);
        health.ejected_gauge.set(1.0);
        tracing::warn!(endpoint = pool.url(), why, for_ = ?length, "endpoint ejected");
        true
    }

    /// One interval's end: success-rate outliers are ejected, ejection counts decay, the
    /// windows start over, and gauges of returned endpoints drop.
    pub(crate) fn sweep(&self, set: &EndpointSet, now: Instant) {
        let o = &self.outlier;
        let rates: Vec<(&Arc<EndpointPool>, f64)> = set
            .iter()
            .filter(|pool| !pool.health.is_retired())
            .filter_map(|pool| {
                let h = &pool.health;
                let ok = h.window_ok.load(Ordering::Relaxed);
                let failed = h.window_failed.load(Ordering::Relaxed);
                (ok + failed >= o.request_volume.max(1))
                    .then(|| (pool, ok as f64 / (ok + failed) as f64))
            })
            .collect();
        if o.minimum_hosts > 0 && rates.len() >= o.minimum_hosts {
            let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / rates.len() as f64;
            let variance =
                rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
            let floor = mean - o.stdev_factor * variance.sqrt();
            for &(pool, rate) in &rates {
                if rate < floor {
                    self.eject(set, pool, "success-rate outlier", now);
                }
            }
        }
        for pool in set.iter() {
            let h = &pool.health;
            let failed = h.window_failed.swap(0, Ordering::Relaxed);
            h.window_ok.store(0, Ordering::Relaxed);
            if !self.is_ejected(h, now) {
                h.ejected_gauge.set(0.0);
                if failed == 0 {
                    let _ =
                        h.times_ejected
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                                t.checked_sub(1)
                            });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pool::PoolSettings;
    use tonic::transport::Endpoint;

    const URLS: [&str; 4] = [
        "http://a.invalid",
        "http://b.invalid",
        "http://c.invalid",
        "http://d.invalid",
    ];

    /// A router over `n` endpoints (lazy channels, never connected).
    struct R {
        router: Router,
        set: EndpointSet,
    }

    impl R {
        fn is_ejected(&self, index: usize, now: Instant) -> bool {
            self.router.is_ejected(&self.set.get(index).health, now)
        }

        fn record(&self, index: usize, outcome: Option<ErrorKind>) {
            self.router.record(&self.set, self.set.get(index), outcome);
        }

        fn pick(&self, tried: u64, advance: bool) -> usize {
            self.router.pick(&self.set, tried, advance)
        }

        fn sweep(&self, now: Instant) {
            self.router.sweep(&self.set, now);
        }
    }

    fn router(n: usize, balance: Balance, outlier: OutlierDetection) -> R {
        let settings = PoolSettings {
            min: 1,
            max: 1,
            grow_at: 64,
            idle: Duration::from_secs(60),
        };
        let pools = (0..n)
            .map(|i| {
                let endpoint = Endpoint::from_static(URLS[i]);
                EndpointPool::new(i, URLS[i].to_owned(), endpoint, settings, Vec::new())
            })
            .collect();
        R {
            router: Router::new(balance, outlier),
            set: EndpointSet::new(pools, n),
        }
    }

    fn fail(router: &R, index: usize, times: u32) {
        for _ in 0..times {
            router.record(index, Some(ErrorKind::Unavailable));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_for_longer_each_time_and_it_returns_on_its_own() {
        let outlier = OutlierDetection::default()
            .with_consecutive_failures(3)
            .with_ejection(Duration::from_secs(10), Duration::from_secs(25));
        let r = router(3, Balance::RoundRobin, outlier);
        fail(&r, 0, 2);
        r.record(0, None); // a success in between starts the count over
        fail(&r, 0, 2);
        r.record(0, Some(ErrorKind::InvalidRequest)); // the caller's fault: not counted
        assert!(!r.is_ejected(0, Instant::now()));
        fail(&r, 0, 1);
        assert!(r.is_ejected(0, Instant::now()), "3 in a row");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!r.is_ejected(0, Instant::now()), "back after 10 s");
        fail(&r, 0, 3);
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(
            r.is_ejected(0, Instant::now()),
            "the second ejection lasts 20 s"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!r.is_ejected(0, Instant::now()));
        fail(&r, 0, 3);
        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(!r.is_ejected(0, Instant::now()), "capped at 25 s, not 30");
        assert_eq!(r.set.get(0).health.ejections(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_share_and_a_single_endpoint_never() {
        let outlier = OutlierDetection::default()
            .with_consecutive_failures(1)
            .with_max_ejected_share(0.5);
        let r = router(4, Balance::RoundRobin, outlier);
        for i in 0..4 {
            fail(&r, i, 1);
        }
        let now = Instant::now();
        assert_eq!((0..4).filter(|&i| r.is_ejected(i, now)).count(), 2);
        let alone = router(1, Balance::RoundRobin, outlier);
        fail(&alone, 0, 10);
        assert!(!alone.is_ejected(0, now));
        // A share so small it rounds to none still lets one out.
        let r = router(3, Balance::RoundRobin, outlier.with_max_ejected_share(0.1));
        fail(&r, 0, 1);
        fail(&r, 1, 1);
        assert!(r.is_ejected(0, now) && !r.is_ejected(1, now));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_rate_outlier_is_ejected_at_the_interval_end() {
        let outlier = OutlierDetection::default()
            .with_consecutive_failures(0)
            .with_success_rate(Duration::from_secs(10), 3, 10)
            .with_stdev_factor(1.0);
        let r = router(4, Balance::RoundRobin, outlier);
        for i in 0..URLS.len() {
            for k in 0..20 {
                let failed = i == 3 && k % 2 == 0 || i == 2 && k == 0;
                r.record(i, failed.then_some(ErrorKind::Internal));
            }
        }
        r.sweep(Instant::now());
        let now = Instant::now();
        assert!(r.is_ejected(3, now), "50 % against ~97 %");
        assert!(!r.is_ejected(2, now), "95 % is within the spread");
        // Too few calls to judge: no ejection.
        let r = router(4, Balance::RoundRobin, outlier);
        fail(&r, 3, 5);
        r.sweep(Instant::now());
        assert!(!r.is_ejected(3, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn picks_skip_tried_and_ejected_endpoints_and_p2c_prefers_the_idle_one() {
        let outlier = OutlierDetection::default().with_consecutive_failures(1);
        let r = router(3, Balance::RoundRobin, outlier);
        fail(&r, 1, 1);
        for _ in 0..10 {
            let picked = r.pick(0b001, false);
            assert_eq!(picked, 2, "0 tried, 1 ejected");
        }
        assert_eq!(r.pick(0b101, false), 1, "only the ejected one left untried");
        let any = r.pick(0b111, false);
        assert!(any < 3, "all tried: any");

        let r = router(3, Balance::PowerOfTwoChoices, OutlierDetection::disabled());
        let busy = r.set.get(0);
        let calls: Vec<_> = (0..5)
            .map(|_| crate::pool::InFlight::start(Arc::clone(busy), 0))
            .collect();
        let zero = (0..200).filter(|_| r.pick(0, true) == 0).count();
        assert_eq!(zero, 0, "0 loses every draw it is in");
        drop(calls);
    }

    #[tokio::test(start_paused = true)]
    async fn retired_endpoints_are_never_picked_nor_counted_in_the_share() {
        let outlier = OutlierDetection::default()
            .with_consecutive_failures(1)
            .with_max_ejected_share(0.5);
        let r = router(4, Balance::RoundRobin, outlier);
        r.set.get(1).health.set_retired(true);
        r.set.get(2).health.set_retired(true);
        for _ in 0..20 {
            let picked = r.pick(0, true);
            assert!(picked == 0 || picked == 3, "picked retired {picked}");
        }
        // All live ones tried: still a live one.
        assert!(matches!(r.pick(0b1001, false), 0 | 3));
        // Two in rotation: one may be ejected, not both.
        fail(&r, 0, 1);
        fail(&r, 3, 1);
        let now = Instant::now();
        assert!(r.is_ejected(0, now) && !r.is_ejected(3, now));
        // A retired endpoint is not ejected.
        fail(&r, 1, 3);
        assert!(!r.is_ejected(1, now));
    }
}
