//! Connections per endpoint that grow under load, shrink when idle, and are replaced when
//! they fail.
//!
//! Each endpoint has `max` slots, each holding a tonic [`Channel`] (one HTTP/2 connection,
//! opened lazily on its first call). Calls go round-robin over the first `active` slots.
//! When the calls in flight on an endpoint reach `active × grow_at`, the next call opens one
//! more slot (up to `max`). A reaper task closes the last slot (down to `min`) once the
//! calls in flight have fitted in one slot fewer for `idle`. A slot whose connection failed
//! gets a new channel, so the next call there connects afresh.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::endpoints::{EndpointHealth, EndpointSet};

/// How the connections to each endpoint grow and shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub min: usize,
    pub max: usize,
    pub grow_at: usize,
    pub idle: Duration,
}

/// One endpoint's connections.
pub(crate) struct EndpointPool {
    /// Its position among the service's endpoints.
    pub(crate) index: usize,
    url: String,
    endpoint: Endpoint,
    settings: PoolSettings,
    slots: Box<[ArcSwap<Channel>]>,
    active: AtomicUsize,
    next: AtomicUsize,
    in_flight: AtomicUsize,
    calls: AtomicU64,
    grown: AtomicU64,
    shrunk: AtomicU64,
    replaced: AtomicU64,
    /// Since when the calls in flight have fitted in one slot fewer (for the reaper).
    quiet_since: Mutex<Option<Instant>>,
    /// `qdrant_connections{endpoint}`: the open slots.
    gauge: metrics::Gauge,
    /// `qdrant_connections_replaced_total{endpoint}`.
    replaced_total: metrics::Counter,
    /// Outlier detection's state of the endpoint, and whether discovery retired it.
    pub(crate) health: EndpointHealth,
}

/// A channel picked for one call, and where it came from.
pub(crate) struct Picked {
    pub pool: Arc<EndpointPool>,
    pub slot: usize,
    pub channel: Channel,
}

/// Counts a call in flight on its endpoint until dropped (the call ended or was cancelled).
pub(crate) struct InFlight {
    pool: Arc<EndpointPool>,
    slot: usize,
}

impl EndpointPool {
    /// `channels` opens the first ones (`min` or more, eagerly connected by
    /// `QdrantServiceBuilder::connect`); the other slots get lazy channels.
    pub(crate) fn new(
        index: usize,
        url: String,
        endpoint: Endpoint,
        settings: PoolSettings,
        mut channels: Vec<Channel>,
    ) -> Arc<Self> {
        while channels.len() < settings.max {
            channels.push(endpoint.connect_lazy());
        }
        metrics::describe_gauge!(
            "qdrant_connections",
            "Connections per Qdrant endpoint the pool keeps open now"
        );
        metrics::describe_counter!(
            "qdrant_connections_replaced_total",
            "Connections replaced after they failed, per Qdrant endpoint"
        );
        let gauge = metrics::gauge!("qdrant_connections", "endpoint" => url.clone());
        gauge.set(settings.min as f64);
        let replaced_total =
            metrics::counter!("qdrant_connections_replaced_total", "endpoint" => url.clone());
        let url_label = url.clone();
        Arc::new(EndpointPool {
            index,
            url,
            endpoint,
            settings,
            slots: channels.into_iter().map(ArcSwap::from_pointee).collect(),
            active: AtomicUsize::new(settings.min),
            next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            grown: AtomicU64::new(0),
            shrunk: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            quiet_since: Mutex::new(None),
            gauge,
            replaced_total,
            health: EndpointHealth::new(&url_label),
        })
    }

    /// A channel for the next call: one more slot first if the open ones are busy.
    pub(crate) fn pick(self: &Arc<Self>) -> Picked {
        let mut active = self.active.load(Ordering::Acquire);
        let max = self.settings.max;
        if active < max
            && self.in_flight.load(Ordering::Relaxed) >= active * self.settings.grow_at
            && self
                .active
                .compare_exchange(active, active + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            active += 1;
            self.grown.fetch_add(1, Ordering::Relaxed);
            self.gauge.set(active as f64);
            tracing::debug!(endpoint = %self.url, connections = active, "connection pool grew");
        }
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % active;
        Picked {
            pool: Arc::clone(self),
            slot,
            channel: Channel::clone(&self.slots[slot].load()),
        }
    }

    /// A new channel in `slot`, whose connection failed: the next call there connects
    /// afresh. Calls still on the old channel finish on it.
    pub(crate) fn replace(&self, slot: usize) {
        self.slots[slot].store(Arc::new(self.endpoint.connect_lazy()));
        self.replaced.fetch_add(1, Ordering::Relaxed);
        self.replaced_total.increment(1);
        tracing::debug!(endpoint = %self.url, slot, "replaced a failed connection");
    }

    /// Closes the last open slot if the calls in flight have fitted in one slot fewer for the
    /// idle time; returns whether it did.
    fn reap(&self, now: Instant) -> bool {
        let active = self.active.load(Ordering::Acquire);
        let mut quiet = self
            .quiet_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if active <= self.settings.min
            || self.in_flight.load(Ordering::Relaxed) > (active - 1) * self.settings.grow_at
        {
            *quiet = None;
            return false;
        }
        let since = *quiet.get_or_insert(now);
        if now.saturating_duration_since(since) < self.settings.idle {
            return false;
        }
        if self
            .active
            .compare_exchange(active, active - 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // Dropping the slot's channel closes its connection once the calls on it end.
        self.slots[active - 1].store(Arc::new(self.endpoint.connect_lazy()));
        self.shrunk.fetch_add(1, Ordering::Relaxed);
        self.gauge.set((active - 1) as f64);
        *quiet = Some(now);
        tracing::debug!(endpoint = %self.url, connections = active - 1, "connection pool shrank");
        true
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Calls in flight on the endpoint (its load, for power-of-two-choices).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            endpoint: self.url.clone(),
            connections: self.active.load(Ordering::Acquire),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            min: self.settings.min,
            max: self.settings.max,
            grown: self.grown.load(Ordering::Relaxed),
            shrunk: self.shrunk.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            ejected: false,
            ejections: self.health.ejections(),
            retired: self.health.is_retired(),
            peer_id: self.health.peer_id(),
        }
    }
}

impl InFlight {
    pub(crate) fn start(pool: Arc<EndpointPool>, slot: usize) -> Self {
        pool.in_flight.fetch_add(1, Ordering::Relaxed);
        pool.calls.fetch_add(1, Ordering::Relaxed);
        InFlight { pool, slot }
    }

    /// The call failed to connect: give its slot a new channel.
    pub(crate) fn connection_failed(&self) {
        self.pool.replace(self.slot);
    }

    /// The endpoint the call went to.
    pub(crate) fn pool(&self) -> &EndpointPool {
        &self.pool
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shrinks idle pools (those discovery adds later too) until the service is gone. Runs only
/// when pools can shrink (`settings`, the same for every endpoint).
pub(crate) fn spawn_reaper(set: Weak<EndpointSet>, settings: PoolSettings) {
    if settings.max <= settings.min {
        return;
    }
    let period = (settings.idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(set) = set.upgrade() else {
                return;
            };
            let now = Instant::now();
            for pool in set.iter() {
                pool.reap(now);
            }
        }
    });
}

/// One endpoint's connections, as [`QdrantService::pool_stats`](crate::QdrantService::pool_stats)
/// reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The endpoint's URL.
    pub endpoint: String,
    /// Connections in use now (`min..=max`).
    pub connections: usize,
    /// Calls in flight on the endpoint.
    pub in_flight: usize,
    /// Calls (attempts) sent to the endpoint so far.
    pub calls: u64,
    /// The fewest connections kept.
    pub min: usize,
    /// The most connections opened.
    pub max: usize,
    /// How many times the pool grew by one.
    pub grown: u64,
    /// How many times it shrank by one.
    pub shrunk: u64,
    /// How many failed connections were replaced.
    pub replaced: u64,
    /// Whether outlier detection keeps the endpoint out of rotation now.
    pub ejected: bool,
    /// How many times outlier detection ejected it.
    pub ejections: u64,
    /// Whether discovery took it out of rotation (its peer left the cluster).
    pub retired: bool,
    /// The Qdrant peer id it answered discovery with, once known.
    pub peer_id: Option<u64>,
}
