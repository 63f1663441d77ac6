//! Configuration of a [`QdrantStack`](crate::QdrantStack): a [`Profile`]'s defaults, then a TOML
//! file, then the environment, then the builder — each source overriding the ones before.
//!
//! ```
//! use std::time::Duration;
//! use qdrant_tower::config::{ConfigLoader, StackConfig};
//! use qdrant_tower::Profile;
//!
//! let config = ConfigLoader::new()
//!     .toml(
//!         r#"
//!         profile = "staging"
//!         endpoints = ["http://qdrant-0:6334", "http://qdrant-1:6334"]
//!         [breaker]
//!         failure_threshold = 8
//!         "#,
//!     )
//!     // In a service: `.env()`, the process environment.
//!     .env_vars([("QDRANT_TOWER__RETRY__UNAVAILABLE__ATTEMPTS", "2")])
//!     .load()?;
//! assert_eq!(config.profile, Profile::Staging);
//! assert_eq!(config.health.interval, Duration::from_secs(30), "staging's default");
//! assert_eq!(config.breaker.failure_threshold, 8, "from the file");
//! assert_eq!(config.retry.unavailable.attempts, 2, "from the environment");
//! # Ok::<(), qdrant_tower::config::ConfigError>(())
//! ```
//!
//! # Sources and keys
//!
//! | key (TOML) | environment variable | default (production) |
//! |---|---|---|
//! | `profile` | `QDRANT_TOWER__PROFILE` | `production` (`development`, `staging`, `testing`) |
//! | `name` | `QDRANT_TOWER__NAME` | `qdrant` (the breaker's and health check's name) |
//! | `endpoints` | `QDRANT_URL` (comma-separated), `QDRANT_TOWER__ENDPOINTS` | `["http://localhost:6334"]` |
//! | `api_key` | `QDRANT_API_KEY`, `QDRANT_TOWER__API_KEY` | none (secret: never shown) |
//! | `deadline` | `QDRANT_TOWER__DEADLINE` | `10s` per call, retries included |
//! | `attempt_timeout` | `QDRANT_TOWER__ATTEMPT_TIMEOUT` | `5s` per attempt |
//! | `idempotent_create` | `QDRANT_TOWER__IDEMPOTENT_CREATE` | `false` (see [`Client::create_collection`](crate::Client::create_collection)) |
//! | `connections.min`, `.max` | `QDRANT_TOWER__CONNECTIONS__MIN`, `__MAX` | 5, 20 per endpoint |
//! | `connections.grow_at` | `QDRANT_TOWER__CONNECTIONS__GROW_AT` | 64 calls in flight per connection |
//! | `connections.idle` | `QDRANT_TOWER__CONNECTIONS__IDLE` | `60s` below the bound before shrinking |
//! | `retry.time_scale` | `QDRANT_TOWER__RETRY__TIME_SCALE` | 1.0 (every delay multiplied) |
//! | `retry.<kind>.attempts` | `QDRANT_TOWER__RETRY__<KIND>__ATTEMPTS` | connect 3, timeout 2, rate_limited 5, unavailable 3, internal 3 |
//! | `retry.<kind>.base_delay` | `QDRANT_TOWER__RETRY__<KIND>__BASE_DELAY` | 100ms, 1s, 500ms, 1s, 100ms |
//! | `retry.<kind>.max_delay` | `QDRANT_TOWER__RETRY__<KIND>__MAX_DELAY` | 5s, 2s, 30s, 10s, 5s |
//! | `breaker.failure_threshold` | `QDRANT_TOWER__BREAKER__FAILURE_THRESHOLD` | 5 failures in a row open it |
//! | `breaker.failure_rate` | `QDRANT_TOWER__BREAKER__FAILURE_RATE` | none (0–1: share of the last 100 calls) |
//! | `breaker.minimum_calls` | `QDRANT_TOWER__BREAKER__MINIMUM_CALLS` | 20 calls before a rate counts |
//! | `breaker.open_wait` | `QDRANT_TOWER__BREAKER__OPEN_WAIT` | `60s` (`30s` in development) |
//! | `breaker.half_open_trials` | `QDRANT_TOWER__BREAKER__HALF_OPEN_TRIALS` | 3 |
//! | `breaker.half_open_successes` | `QDRANT_TOWER__BREAKER__HALF_OPEN_SUCCESSES` | 2 |
//! | `breaker.keyed` | `QDRANT_TOWER__BREAKER__KEYED` | `none` (`collection`, `collection_and_class`) |
//! | `health.interval` | `QDRANT_TOWER__HEALTH__INTERVAL` | `15s` |
//! | `health.probe_timeout` | `QDRANT_TOWER__HEALTH__PROBE_TIMEOUT` | `5s` |
//! | `health.unhealthy_after` | `QDRANT_TOWER__HEALTH__UNHEALTHY_AFTER` | 3 failed probes |
//! | `health.healthy_after` | `QDRANT_TOWER__HEALTH__HEALTHY_AFTER` | 1 good probe |
//! | `admin.token` | `QDRANT_TOWER__ADMIN__TOKEN` | none: admin changes refused (secret: never shown) |
//! | `admin.protect_reads` | `QDRANT_TOWER__ADMIN__PROTECT_READS` | `false` |
//! | `admin.open_alert_after` | `QDRANT_TOWER__ADMIN__OPEN_ALERT_AFTER` | `5m`: a breaker open longer is a critical alert |
//! | `admin.error_rate_alert` | `QDRANT_TOWER__ADMIN__ERROR_RATE_ALERT` | 0.2 |
//! | `cache.collections` | `QDRANT_TOWER__CACHE__COLLECTIONS` (comma-separated) | none: no read cache |
//! | `cache.ttl`, `cache.max_entries`, `cache.max_bytes` | `QDRANT_TOWER__CACHE__TTL`, … | `30s`, 10 000, 64 MiB |
//! | `cache.stale_for` | `QDRANT_TOWER__CACHE__STALE_FOR` | `10m`: last good answers kept for stale fallbacks (`0s`: none) |
//! | `fallback.stale` | `QDRANT_TOWER__FALLBACK__STALE` | `false`: failed reads of cached collections answered stale, marked |
//! | `fallback.on` | `QDRANT_TOWER__FALLBACK__ON` (comma-separated kinds) | `circuit_open, unhealthy, connect, timeout, unavailable, internal, rate_limited` |
//! | `queue.collections` | `QDRANT_TOWER__QUEUE__COLLECTIONS` (comma-separated) | none: no write-behind queue |
//! | `queue.dir` | `QDRANT_TOWER__QUEUE__DIR` | none (required with collections) |
//! | `queue.max_records`, `queue.max_bytes` | `QDRANT_TOWER__QUEUE__MAX_RECORDS`, … | 100 000, 1 GiB |
//! | `queue.replay_interval` | `QDRANT_TOWER__QUEUE__REPLAY_INTERVAL` | `1s` |
//! | `hedge.operations` | `QDRANT_TOWER__HEDGE__OPERATIONS` (comma-separated) | none: no hedging (reads only: `search`, `query`, `get`…) |
//! | `hedge.delay` or `hedge.percentile` | `QDRANT_TOWER__HEDGE__DELAY`, `…__PERCENTILE` | none, 0.95 (after `min_samples` 100 calls, at least `floor` 1ms) |
//! | `hedge.budget_percent`, `hedge.budget_per_second` | `QDRANT_TOWER__HEDGE__BUDGET_PERCENT`, … | 0.1, 1: hedges ≤ 10 % of calls + 1/s |
//! | `balance` | `QDRANT_TOWER__BALANCE` | `round_robin` (or `p2c`: power of two choices by calls in flight) |
//! | `outlier.consecutive_failures` | `QDRANT_TOWER__OUTLIER__CONSECUTIVE_FAILURES` | 5 failures in a row eject an endpoint (0: off) |
//! | `outlier.base_ejection`, `outlier.max_ejection` | `QDRANT_TOWER__OUTLIER__BASE_EJECTION`, … | `30s` × times ejected, at most `5m` |
//! | `outlier.max_ejected_share` | `QDRANT_TOWER__OUTLIER__MAX_EJECTED_SHARE` | 0.5 (at least one of two or more) |
//! | `outlier.interval`, `outlier.minimum_hosts`, `outlier.request_volume`, `outlier.stdev_factor` | `QDRANT_TOWER__OUTLIER__INTERVAL`, … | `10s`, 5, 50, 1.9: success-rate outliers (see `qdrant_tower::client::endpoints` for small clusters) |
//! | `discovery.interval`, `discovery.timeout` | `QDRANT_TOWER__DISCOVERY__INTERVAL`, … | off; with a `[discovery]` section: `30s`, `5s` (the endpoints are seeds; see `qdrant_tower::client::discovery`) |
//! | `discovery.rest_port_offset`, `discovery.grpc_port_offset` | `QDRANT_TOWER__DISCOVERY__REST_PORT_OFFSET`, … | −1, −1: Qdrant's ports (REST 6333 = gRPC − 1, gRPC 6334 = p2p − 1) |
//! | `discovery.max_endpoints` | `QDRANT_TOWER__DISCOVERY__MAX_ENDPOINTS` | 16 (seeds included, at most 64) |
//! | `metrics.collection_labels` | `QDRANT_TOWER__METRICS__COLLECTION_LABELS` | 0: no `collection` label (else the first N collections, then `_other`) |
//!
//! `<kind>` is `connect`, `timeout`, `rate_limited`, `unavailable` or `internal`. Durations
//! are written as `250ms`, `5s`, `1m 30s`. Only variables starting with `QDRANT_TOWER__`, and
//! `QDRANT_URL` and `QDRANT_API_KEY`, are read; every other variable is ignored.
//!
//! # Errors
//! A value of the wrong type, an unknown key (with the closest known one: "did you mean"),
//! and a value out of range each fail [`ConfigLoader::load`] with a [`ConfigError`] naming
//! the key, the value, why, and which source gave it. Secrets are never in the message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Provider};
use serde::{Deserialize, Serialize};

use qdrant_tower_layers::breaker::BreakerConfig;
use qdrant_tower_layers::health::HealthConfig;
use qdrant_tower_layers::retry::RetryPolicy;
use qdrant_tower_layers::{BreakerKey, ErrorKind};

use crate::Profile;

mod watch;
pub use watch::{ConfigWatcher, ReloadEvent};

/// The prefix of the environment variables read for nested keys.
pub const ENV_PREFIX: &str = "QDRANT_TOWER__";

/// Everything a [`QdrantStack`](crate::QdrantStack) is built from, as a file or the
/// environment writes it. Start from [`StackConfig::for_profile`] or a [`ConfigLoader`], then
/// change fields; [`validate`](Self::validate) names the first one out of range.
///
/// `Debug` and `Serialize` (a dumped config) show the API key as `[redacted]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// The profile the defaults came from.
    pub profile: Profile,
    /// The breaker's and health check's name, in metrics, logs and errors.
    pub name: String,
    /// Qdrant's gRPC endpoints, used round-robin.
    pub endpoints: Vec<String>,
    /// The API key, if the server wants one.
    pub api_key: Option<Secret>,
    /// The whole call's deadline, retries and backoffs included.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Each attempt's timeout.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Whether a create-collection retried after an ambiguous failure and answered
    /// `ALREADY_EXISTS` with the same configuration counts as created.
    pub idempotent_create: bool,
    /// Connections per endpoint.
    pub connections: ConnectionsConfig,
    /// The retry table.
    pub retry: RetryConfig,
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// The health check.
    pub health: HealthSettings,
    /// Metrics labels.
    pub metrics: MetricsSettings,
    /// The admin API's token and alert bounds (used by `AdminConfig::from_config`).
    pub admin: AdminSettings,
    /// The read cache.
    pub cache: CacheSettings,
    /// Fallbacks for failed reads.
    pub fallback: FallbackSettings,
    /// The durable write-behind queue.
    pub queue: QueueSettings,
    /// How calls are spread over several endpoints (`None`: the service's default,
    /// round-robin, or what `configure_service` set).
    pub balance: Option<BalanceSetting>,
    /// Outlier detection over several endpoints (`None`: the service's default, or what
    /// `configure_service` set).
    pub outlier: Option<OutlierSettings>,
    /// Hedged reads.
    pub hedge: HedgeSettings,
    /// Endpoint discovery from the cluster's peers (`None`: off).
    pub discovery: Option<DiscoverySettings>,
}

/// Endpoint discovery (see `qdrant_tower::client::discovery`): the endpoints are the seeds;
/// keys left out keep their defaults. A section, even empty, turns it on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DiscoverySettings {
    /// How often to read the peers.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The longest one request for the peers may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// An endpoint's REST port is its gRPC port plus this.
    pub rest_port_offset: i32,
    /// A peer's gRPC port is its p2p port plus this.
    pub grpc_port_offset: i32,
    /// The most endpoints, seeds included (at most 64).
    pub max_endpoints: usize,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        let d = qdrant_tower_client::discovery::Discovery::new();
        DiscoverySettings {
            interval: d.interval(),
            timeout: d.timeout(),
            rest_port_offset: d.ports().0,
            grpc_port_offset: d.ports().1,
            max_endpoints: d.max_endpoints(),
        }
    }
}

impl DiscoverySettings {
    /// As the service's setting.
    pub fn discovery(&self) -> qdrant_tower_client::discovery::Discovery {
        qdrant_tower_client::discovery::Discovery::new()
            .with_interval(self.interval)
            .with_timeout(self.timeout)
            .with_ports(self.rest_port_offset, self.grpc_port_offset)
            .with_max_endpoints(self.max_endpoints)
    }
}

/// Hedged reads (see `qdrant_tower::layers::hedge`): off unless operations are listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HedgeSettings {
    /// The read operations to hedge (`search`, `query`, `get`…).
    pub operations: Vec<String>,
    /// Hedge after this long (else after `percentile`).
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Hedge after this percentile of recent latencies (0–1), once `min_samples` calls were
    /// seen, never before `floor`.
    pub percentile: f64,
    /// Calls seen before percentile hedging starts.
    pub min_samples: u64,
    /// The shortest percentile delay.
    #[serde(with = "humantime_serde")]
    pub floor: Duration,
    /// Hedges allowed as a share of calls (0–1), on top of `budget_per_second`.
    pub budget_percent: f32,
    /// Hedges allowed per second whatever the share.
    pub budget_per_second: u32,
}

impl Default for HedgeSettings {
    fn default() -> Self {
        HedgeSettings {
            operations: Vec::new(),
            delay: None,
            percentile: 0.95,
            min_samples: 100,
            floor: Duration::from_millis(1),
            budget_percent: 0.1,
            budget_per_second: 1,
        }
    }
}

impl HedgeSettings {
    /// The layer's configuration, or `None` when no operation is listed.
    pub fn hedge_config(
        &self,
    ) -> Result<Option<qdrant_tower_layers::hedge::HedgeConfig>, InvalidConfig> {
        use qdrant_tower_layers::hedge::{HedgeConfig, HedgeDelay};
        if self.operations.is_empty() {
            return Ok(None);
        }
        let bad = |field: &str, value: String, reason: String| InvalidConfig {
            field: field.to_owned(),
            value,
            reason,
            origin: None,
        };
        let mut operations = Vec::new();
        for name in &self.operations {
            let Some(&op) = qdrant_tower_client::VectorRequest::OPERATIONS
                .iter()
                .find(|op| **op == name.as_str())
            else {
                return Err(bad(
                    "hedge.operations",
                    name.clone(),
                    "is not an operation name".into(),
                ));
            };
            // An empty message of the operation says whether it reads.
            let reads = qdrant_tower_client::VectorOp::decode(op, &[]).is_ok_and(|m| m.is_read());
            if !reads {
                return Err(bad(
                    "hedge.operations",
                    name.clone(),
                    "is not a read: only reads are hedged (a hedged write is sent twice)".into(),
                ));
            }
            operations.push(op);
        }
        if !(0.0..=1.0).contains(&self.percentile) {
            return Err(bad(
                "hedge.percentile",
                self.percentile.to_string(),
                "must be within 0 and 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.budget_percent) {
            return Err(bad(
                "hedge.budget_percent",
                self.budget_percent.to_string(),
                "must be within 0 and 1".into(),
            ));
        }
        let delay = match self.delay {
            Some(delay) => HedgeDelay::Fixed(delay),
            None => HedgeDelay::Percentile {
                percentile: self.percentile,
                min_samples: self.min_samples,
                floor: self.floor,
            },
        };
        Ok(Some(
            HedgeConfig::with_delay(delay)
                .operations(operations)
                .budget(qdrant_tower_layers::RetryBudget::new(
                    Duration::from_secs(10),
                    self.budget_per_second,
                    self.budget_percent,
                )),
        ))
    }
}

/// How calls are spread over several endpoints (see `qdrant_tower::client::endpoints`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BalanceSetting {
    /// In turn.
    RoundRobin,
    /// Power of two choices by calls in flight.
    P2c,
}

impl From<BalanceSetting> for qdrant_tower_client::Balance {
    fn from(setting: BalanceSetting) -> Self {
        match setting {
            BalanceSetting::RoundRobin => qdrant_tower_client::Balance::RoundRobin,
            BalanceSetting::P2c => qdrant_tower_client::Balance::PowerOfTwoChoices,
        }
    }
}

/// Outlier detection per endpoint (see `qdrant_tower::client::endpoints`); keys left out keep
/// their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct OutlierSettings {
    /// Failures in a row that eject an endpoint (0: off).
    pub consecutive_failures: u32,
    /// The first ejection's length (each further one is longer by as much).
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// The largest share of endpoints out at once.
    pub max_ejected_share: f64,
    /// How often success rates are compared.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Endpoints with enough calls needed to compare success rates (0: off).
    pub minimum_hosts: usize,
    /// Calls in an interval for an endpoint's success rate to count.
    pub request_volume: u64,
    /// Standard deviations below the mean that make an outlier.
    pub stdev_factor: f64,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        let d = qdrant_tower_client::OutlierDetection::default();
        OutlierSettings {
            consecutive_failures: d.consecutive_failures,
            base_ejection: d.base_ejection,
            max_ejection: d.max_ejection,
            max_ejected_share: d.max_ejected_share,
            interval: d.interval,
            minimum_hosts: d.minimum_hosts,
            request_volume: d.request_volume,
            stdev_factor: d.stdev_factor,
        }
    }
}

impl OutlierSettings {
    /// As the service's setting.
    pub fn detection(&self) -> qdrant_tower_client::OutlierDetection {
        qdrant_tower_client::OutlierDetection::default()
            .with_consecutive_failures(self.consecutive_failures)
            .with_ejection(self.base_ejection, self.max_ejection)
            .with_max_ejected_share(self.max_ejected_share)
            .with_success_rate(self.interval, self.minimum_hosts, self.request_volume)
            .with_stdev_factor(self.stdev_factor)
    }
}

/// Fallbacks for failed reads (see [`fallback`](crate::fallback)); static, computed and
/// secondary sources are given in code
/// ([`QdrantStackBuilder::fallback`](crate::QdrantStackBuilder::fallback)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FallbackSettings {
    /// Whether a failed read of a cached collection is answered with the cache's last good
    /// answer, marked stale with its age.
    pub stale: bool,
    /// The error kinds a read falls back on (snake_case names).
    pub on: Vec<String>,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        FallbackSettings {
            stale: false,
            on: crate::fallback::FallbackLayer::DEFAULT_ON
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
        }
    }
}

impl FallbackSettings {
    /// The kinds of [`on`](Self::on).
    pub fn kinds(&self) -> Result<Vec<ErrorKind>, InvalidConfig> {
        self.on
            .iter()
            .map(|name| {
                ErrorKind::ALL
                    .into_iter()
                    .find(|kind| kind.as_str() == name)
                    .ok_or_else(|| InvalidConfig {
                        field: "fallback.on".into(),
                        value: name.clone(),
                        reason: format!(
                            "is not an error kind (one of: {})",
                            ErrorKind::ALL.map(ErrorKind::as_str).join(", ")
                        ),
                        origin: None,
                    })
            })
            .collect()
    }
}

/// The durable write-behind queue (see [`queue`](crate::queue)): off unless collections are
/// listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueSettings {
    /// The directory of its log and dead-letter file.
    pub dir: Option<PathBuf>,
    /// The collections whose writes may be queued.
    pub collections: Vec<String>,
    /// The most records queued.
    pub max_records: u64,
    /// The most bytes queued.
    pub max_bytes: u64,
    /// How often replay checks whether Qdrant is back.
    #[serde(with = "humantime_serde")]
    pub replay_interval: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            dir: None,
            collections: Vec::new(),
            max_records: 100_000,
            max_bytes: 1 << 30,
            replay_interval: Duration::from_secs(1),
        }
    }
}

/// The read cache (see [`cache`](crate::cache)): off unless collections are listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheSettings {
    /// The collections whose reads are cached.
    pub collections: Vec<String>,
    /// How long an answer is served from the cache (how stale it may be).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The most entries.
    pub max_entries: u64,
    /// The most bytes of answers.
    pub max_bytes: u64,
    /// How long last good answers are kept past their TTL for stale fallbacks.
    #[serde(with = "humantime_serde")]
    pub stale_for: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            collections: Vec::new(),
            ttl: Duration::from_secs(30),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            stale_for: Duration::from_secs(600),
        }
    }
}

/// The admin API's settings (see `qdrant_tower::admin`, feature `admin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminSettings {
    /// The bearer token changes (and protected reads) need; none refuses changes.
    pub token: Option<Secret>,
    /// Whether reads need the token too.
    pub protect_reads: bool,
    /// A breaker open longer than this is a critical alert.
    #[serde(with = "humantime_serde")]
    pub open_alert_after: Duration,
    /// A breaker's failure rate past this is a warning.
    pub error_rate_alert: f64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            token: None,
            protect_reads: false,
            open_alert_after: Duration::from_secs(300),
            error_rate_alert: 0.2,
        }
    }
}

/// What the stack's metrics are labelled with (see [`observe`](crate::observe)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsSettings {
    /// Label request metrics with the collection for the first this many collections (later
    /// ones share `_other`); 0, the default, leaves the label out.
    pub collection_labels: usize,
}

/// How many connections each endpoint gets; see [`QdrantServiceBuilder::connections`](crate::QdrantServiceBuilder::connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnectionsConfig {
    /// Connections kept open per endpoint.
    pub min: usize,
    /// The most connections per endpoint.
    pub max: usize,
    /// Calls in flight per connection past which another connection opens.
    pub grow_at: usize,
    /// How long the pool stays below the bound before closing a connection.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

/// The retry table: each transient error kind's attempts and delays.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Every delay is multiplied by this (0.01 for tests); `retry-after` is never scaled.
    pub time_scale: f64,
    /// Connection failures.
    pub connect: RetryKind,
    /// Attempts that timed out.
    pub timeout: RetryKind,
    /// `RESOURCE_EXHAUSTED` rate limits (a server's `retry-after` is a floor).
    pub rate_limited: RetryKind,
    /// `UNAVAILABLE`.
    pub unavailable: RetryKind,
    /// `INTERNAL` and other transient errors.
    pub internal: RetryKind,
}

/// One error kind's row of the retry table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryKind {
    /// The most attempts, the first included: 1 never retries.
    pub attempts: u32,
    /// The delay before the first retry.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// The longest delay the backoff computes.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

/// The circuit breaker's thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// Counted failures in a row that open the breaker.
    pub failure_threshold: u32,
    /// The share of failed calls in the last 100 that opens it, if set.
    pub failure_rate: Option<f64>,
    /// Calls in the window before the rate counts.
    pub minimum_calls: u32,
    /// How long it stays open before trying again.
    #[serde(with = "humantime_serde")]
    pub open_wait: Duration,
    /// Trial calls let through half-open.
    pub half_open_trials: u32,
    /// Successful trials that close it.
    pub half_open_successes: u32,
    /// One breaker for the stack, or one per collection (and operation class).
    pub keyed: Keyed,
}

/// Which breaker a call goes through.
///
/// ```
/// use qdrant_tower::config::{ConfigLoader, Keyed};
/// let config = ConfigLoader::new()
///     .toml("[breaker]\nkeyed = \"collection_and_class\"")
///     .load()?;
/// assert_eq!(config.breaker.keyed, Keyed::CollectionAndClass);
/// # Ok::<(), qdrant_tower::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Keyed {
    /// One breaker for every call.
    #[default]
    None,
    /// One per collection, so a sick collection does not fail-fast the others.
    Collection,
    /// One per collection for reads and one for writes.
    CollectionAndClass,
}

impl Keyed {
    /// The layers' key, if keyed.
    pub fn key(self) -> Option<BreakerKey> {
        match self {
            Keyed::None => None,
            Keyed::Collection => Some(BreakerKey::Collection),
            Keyed::CollectionAndClass => Some(BreakerKey::CollectionAndClass),
        }
    }
}

/// The health check's timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthSettings {
    /// How often to probe.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Each probe's timeout.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Failed probes in a row before the backend is unhealthy.
    pub unhealthy_after: u32,
    /// Good probes in a row before it is healthy again.
    pub healthy_after: u32,
}

/// A secret (the API key): shown as `[redacted]` by `Debug`, `Display` and `Serialize`.
///
/// ```
/// use qdrant_tower::config::Secret;
/// let key = Secret::new("s3cr3t");
/// assert_eq!(format!("{key:?} {key}"), "[redacted] [redacted]");
/// assert_eq!(key.expose(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl RetryKind {
    fn of(policy: &RetryPolicy, kind: ErrorKind) -> Self {
        let row = policy.kind(kind);
        RetryKind {
            attempts: row.max_attempts,
            base_delay: row.base,
            max_delay: row.max,
        }
    }
}

impl StackConfig {
    /// `profile`'s defaults (see [`Profile`]), endpoint `http://localhost:6334`, no API key.
    ///
    /// ```
    /// use qdrant_tower::config::StackConfig;
    /// use qdrant_tower::Profile;
    /// let testing = StackConfig::for_profile(Profile::Testing);
    /// assert_eq!((testing.connections.min, testing.connections.max), (1, 2));
    /// assert_eq!(testing.retry.unavailable.attempts, 1);
    /// ```
    pub fn for_profile(profile: Profile) -> Self {
        let retry = profile.retry();
        let breaker = profile.breaker();
        let health = profile.health();
        StackConfig {
            profile,
            name: "qdrant".to_owned(),
            endpoints: vec!["http://localhost:6334".to_owned()],
            api_key: None,
            deadline: profile.deadline(),
            attempt_timeout: profile.attempt_timeout(),
            idempotent_create: false,
            connections: ConnectionsConfig {
                min: profile.connections(),
                max: profile.max_connections(),
                grow_at: 64,
                idle: Duration::from_secs(60),
            },
            retry: RetryConfig {
                time_scale: 1.0,
                connect: RetryKind::of(&retry, ErrorKind::Connect),
                timeout: RetryKind::of(&retry, ErrorKind::Timeout),
                rate_limited: RetryKind::of(&retry, ErrorKind::RateLimited),
                unavailable: RetryKind::of(&retry, ErrorKind::Unavailable),
                internal: RetryKind::of(&retry, ErrorKind::Internal),
            },
            breaker: BreakerSettings {
                failure_threshold: breaker.consecutive_failures().unwrap_or(5),
                failure_rate: breaker.failure_rate(),
                minimum_calls: breaker.minimum_calls(),
                open_wait: breaker.open_wait().base(0),
                half_open_trials: breaker.half_open_trials(),
                half_open_successes: breaker.half_open_successes(),
                keyed: Keyed::None,
            },
            health: HealthSettings {
                interval: health.interval(),
                probe_timeout: health.probe_timeout(),
                unhealthy_after: health.unhealthy_after(),
                healthy_after: health.healthy_after(),
            },
            metrics: MetricsSettings::default(),
            admin: AdminSettings::default(),
            cache: CacheSettings::default(),
            fallback: FallbackSettings::default(),
            queue: QueueSettings::default(),
            balance: None,
            outlier: None,
            hedge: HedgeSettings::default(),
            discovery: None,
        }
    }

    /// The retry table as a policy (the kinds' backoff shapes and jitter, the budget and
    /// everything the file does not set are the defaults').
    pub fn retry_policy(&self) -> RetryPolicy {
        let r = &self.retry;
        let mut policy = RetryPolicy::default();
        for (kind, row) in [
            (ErrorKind::Connect, r.connect),
            (ErrorKind::Timeout, r.timeout),
            (ErrorKind::RateLimited, r.rate_limited),
            (ErrorKind::Unavailable, r.unavailable),
            (ErrorKind::Internal, r.internal),
        ] {
            policy = policy
                .with_attempts(kind, row.attempts)
                .with_base_delay(kind, row.base_delay)
                .with_max_delay(kind, row.max_delay);
        }
        policy.with_time_scale(r.time_scale)
    }

    /// The breaker's configuration.
    pub fn breaker_config(&self) -> BreakerConfig {
        let b = &self.breaker;
        let mut config = BreakerConfig::default()
            .with_consecutive_failures(b.failure_threshold)
            .with_minimum_calls(b.minimum_calls)
            .with_open_wait(b.open_wait)
            .with_half_open_trials(b.half_open_trials)
            .with_half_open_successes(b.half_open_successes);
        if let Some(rate) = b.failure_rate {
            config = config.with_failure_rate(rate);
        }
        config
    }

    /// The health check's configuration.
    pub fn health_config(&self) -> HealthConfig {
        let h = &self.health;
        HealthConfig::default()
            .with_name(self.name.as_str())
            .with_interval(h.interval)
            .with_probe_timeout(h.probe_timeout)
            .with_unhealthy_after(h.unhealthy_after)
            .with_healthy_after(h.healthy_after)
    }

    /// Checks every field, naming the first one out of range, its value and why.
    ///
    /// ```
    /// use std::time::Duration;
    /// use qdrant_tower::config::StackConfig;
    /// let mut config = StackConfig::default();
    /// config.retry.unavailable.max_delay = Duration::ZERO;
    /// assert_eq!(
    ///     config.validate().unwrap_err().to_string(),
    ///     "retry.unavailable.max_delay (0s) must be ≥ retry.unavailable.base_delay (1s)"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |field: &str, value: String, reason: String| {
            Err(InvalidConfig {
                field: field.to_owned(),
                value,
                reason,
                origin: None,
            })
        };
        let secs = |d: Duration| humantime::format_duration(d).to_string();
        if self.name.trim().is_empty() {
            return bad(
                "name",
                format!("{:?}", self.name),
                "must not be empty".into(),
            );
        }
        if self.endpoints.is_empty() {
            return bad(
                "endpoints",
                "[]".into(),
                "needs at least one endpoint".into(),
            );
        }
        for (i, url) in self.endpoints.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.parse::<http::Uri>().is_err()
            {
                return bad(
                    &format!("endpoints[{i}]"),
                    format!("{url:?}"),
                    "must be an http:// or https:// URL such as http://localhost:6334".into(),
                );
            }
        }
        if self.admin.token.as_ref().is_some_and(|k| k.0.is_empty()) {
            return bad(
                "admin.token",
                "\"\"".into(),
                "must not be empty (leave it unset to refuse admin changes)".into(),
            );
        }
        if !(self.admin.error_rate_alert > 0.0 && self.admin.error_rate_alert <= 1.0) {
            return bad(
                "admin.error_rate_alert",
                self.admin.error_rate_alert.to_string(),
                "must be in (0, 1]".into(),
            );
        }
        if self.api_key.as_ref().is_some_and(|k| k.0.is_empty()) {
            return bad(
                "api_key",
                "\"\"".into(),
                "must not be empty (leave it unset for no key)".into(),
            );
        }
        for (field, value) in [
            ("deadline", self.deadline),
            ("attempt_timeout", self.attempt_timeout),
            ("connections.idle", self.connections.idle),
            ("breaker.open_wait", self.breaker.open_wait),
            ("health.interval", self.health.interval),
            ("health.probe_timeout", self.health.probe_timeout),
        ] {
            if value.is_zero() {
                return bad(field, secs(value), "must be greater than zero".into());
            }
        }
        if self.attempt_timeout > self.deadline {
            return bad(
                "attempt_timeout",
                secs(self.attempt_timeout),
                format!(
                    "must be ≤ deadline ({}): an attempt cannot outlast its call",
                    secs(self.deadline)
                ),
            );
        }
        let c = &self.connections;
        if c.min == 0 {
            return bad("connections.min", "0".into(), "must be at least 1".into());
        }
        if c.max < c.min {
            return bad(
                "connections.max",
                c.max.to_string(),
                format!("must be ≥ connections.min ({})", c.min),
            );
        }
        if c.max > MAX_CONNECTIONS {
            return bad(
                "connections.max",
                c.max.to_string(),
                format!("must be at most {MAX_CONNECTIONS} per endpoint"),
            );
        }
        if self.cache.ttl.is_zero() {
            return bad("cache.ttl", "0s".into(), "must be greater than zero".into());
        }
        for (field, value) in [
            ("cache.max_entries", self.cache.max_entries),
            ("cache.max_bytes", self.cache.max_bytes),
        ] {
            if value == 0 {
                return bad(field, "0".into(), "must be at least 1".into());
            }
        }
        self.fallback.kinds()?;
        self.hedge.hedge_config()?;
        if let Some(outlier) = &self.outlier {
            if !(0.0..=1.0).contains(&outlier.max_ejected_share) {
                return bad(
                    "outlier.max_ejected_share",
                    outlier.max_ejected_share.to_string(),
                    "must be within 0 and 1".into(),
                );
            }
            for (field, value) in [
                ("outlier.base_ejection", outlier.base_ejection),
                ("outlier.interval", outlier.interval),
            ] {
                if value.is_zero() {
                    return bad(field, "0s".into(), "must be greater than zero".into());
                }
            }
            if outlier.max_ejection < outlier.base_ejection {
                return bad(
                    "outlier.max_ejection",
                    secs(outlier.max_ejection),
                    format!(
                        "must be ≥ outlier.base_ejection ({})",
                        secs(outlier.base_ejection)
                    ),
                );
            }
            if !(outlier.stdev_factor.is_finite() && outlier.stdev_factor >= 0.0) {
                return bad(
                    "outlier.stdev_factor",
                    outlier.stdev_factor.to_string(),
                    "must be a finite, non-negative number".into(),
                );
            }
        }
        if let Some(discovery) = &self.discovery {
            for (field, value) in [
                ("discovery.interval", discovery.interval),
                ("discovery.timeout", discovery.timeout),
            ] {
                if value.is_zero() {
                    return bad(field, "0s".into(), "must be greater than zero".into());
                }
            }
            let seeds = self.endpoints.len().max(1);
            if !(seeds..=64).contains(&discovery.max_endpoints) {
                return bad(
                    "discovery.max_endpoints",
                    discovery.max_endpoints.to_string(),
                    format!("must be within the {seeds} configured endpoints and 64"),
                );
            }
        }
        let q = &self.queue;
        if !q.collections.is_empty() && q.dir.is_none() {
            return bad(
                "queue.dir",
                "none".into(),
                "must be set when queue.collections lists collections (the queue's log lives there)".into(),
            );
        }
        for (field, value) in [
            ("queue.max_records", q.max_records),
            ("queue.max_bytes", q.max_bytes),
        ] {
            if value == 0 {
                return bad(field, "0".into(), "must be at least 1".into());
            }
        }
        if q.replay_interval.is_zero() {
            return bad(
                "queue.replay_interval",
                "0s".into(),
                "must be greater than zero".into(),
            );
        }
        if self.metrics.collection_labels > MAX_COLLECTION_LABELS {
            return bad(
                "metrics.collection_labels",
                self.metrics.collection_labels.to_string(),
                format!("must be at most {MAX_COLLECTION_LABELS} (each is a set of series)"),
            );
        }
        if c.grow_at == 0 {
            return bad(
                "connections.grow_at",
                "0".into(),
                "must be at least 1 call in flight".into(),
            );
        }
        let r = &self.retry;
        if !(r.time_scale.is_finite() && r.time_scale > 0.0) {
            return bad(
                "retry.time_scale",
                r.time_scale.to_string(),
                "must be a positive, finite factor".into(),
            );
        }
        for (kind, row) in [
            ("connect", r.connect),
            ("timeout", r.timeout),
            ("rate_limited", r.rate_limited),
            ("unavailable", r.unavailable),
            ("internal", r.internal),
        ] {
            if row.attempts == 0 {
                return bad(
                    &format!("retry.{kind}.attempts"),
                    "0".into(),
                    "must be at least 1 (the first attempt; 1 never retries)".into(),
                );
            }
            if row.max_delay < row.base_delay {
                return bad(
                    &format!("retry.{kind}.max_delay"),
                    secs(row.max_delay),
                    format!(
                        "must be ≥ retry.{kind}.base_delay ({})",
                        secs(row.base_delay)
                    ),
                );
            }
        }
        let b = &self.breaker;
        if !(1..=65_535).contains(&b.failure_threshold) {
            return bad(
                "breaker.failure_threshold",
                b.failure_threshold.to_string(),
                "must be between 1 and 65535".into(),
            );
        }
        if let Some(rate) = b.failure_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return bad(
                "breaker.failure_rate",
                rate.to_string(),
                "must be in (0, 1]".into(),
            );
        }
        if !(1..=100).contains(&b.minimum_calls) {
            return bad(
                "breaker.minimum_calls",
                b.minimum_calls.to_string(),
                "must be between 1 and 100 (the window's size)".into(),
            );
        }
        if !(1..=65_535).contains(&b.half_open_trials) {
            return bad(
                "breaker.half_open_trials",
                b.half_open_trials.to_string(),
                "must be between 1 and 65535".into(),
            );
        }
        if !(1..=b.half_open_trials).contains(&b.half_open_successes) {
            return bad(
                "breaker.half_open_successes",
                b.half_open_successes.to_string(),
                format!(
                    "must be between 1 and breaker.half_open_trials ({})",
                    b.half_open_trials
                ),
            );
        }
        let h = &self.health;
        for (field, value) in [
            ("health.unhealthy_after", h.unhealthy_after),
            ("health.healthy_after", h.healthy_after),
        ] {
            if value == 0 {
                return bad(field, "0".into(), "must be at least 1 probe".into());
            }
        }
        // The layers' own checks, in case they know more than the above.
        let layer = |result: Result<(), qdrant_tower_layers::ConfigError>, section: &str| {
            result.map_err(|error| InvalidConfig::from_layer(section, &error))
        };
        layer(self.retry_policy().validate(), "retry")?;
        layer(self.breaker_config().validate(), "breaker")?;
        layer(self.health_config().validate(), "health")?;
        Ok(())
    }
}

/// The most collections metrics may be labelled with.
pub const MAX_COLLECTION_LABELS: usize = 1_000;

/// The most connections per endpoint a configuration may ask for.
pub const MAX_CONNECTIONS: usize = 256;

impl Default for StackConfig {
    /// The production profile's defaults.
    fn default() -> Self {
        StackConfig::for_profile(Profile::default())
    }
}

/// Reads a [`StackConfig`] from a profile, a TOML file and the environment, in that order of
/// precedence (the builder's settings come last, on [`QdrantStackBuilder`](crate::QdrantStackBuilder)).
///
/// A profile named in the file or the environment wins over [`profile`](Self::profile); its
/// defaults are the base the other values override. Loading reads the file each time, so a
/// loader can be kept to reload (see [`QdrantStack::watch`](crate::QdrantStack::watch)); the
/// environment is read once, when [`env`](Self::env) is called.
#[derive(Clone, Default)]
#[must_use]
pub struct ConfigLoader {
    profile: Profile,
    file: Option<PathBuf>,
    toml: Option<String>,
    env: Vec<(String, String)>,
}

impl ConfigLoader {
    /// A loader with the production profile and no file or environment.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// The profile whose defaults apply unless the file or environment names another.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Reads `path` (TOML) on each [`load`](Self::load); a missing file is an error.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// TOML text, read after the file (so it overrides it): for configuration embedded in
    /// your own config or in tests.
    pub fn toml(mut self, text: impl Into<String>) -> Self {
        self.toml = Some(text.into());
        self
    }

    /// The process environment (`QDRANT_URL`, `QDRANT_API_KEY`, `QDRANT_TOWER__…`), as it
    /// is now.
    pub fn env(self) -> Self {
        self.env_vars(std::env::vars())
    }

    /// These variables as the environment: the same names and parsing as [`env`](Self::env),
    /// without touching the process's (for tests, or a secrets manager's values). Later
    /// calls add to earlier ones.
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| {
                    k.starts_with(ENV_PREFIX) || k == "QDRANT_URL" || k == "QDRANT_API_KEY"
                }),
        );
        self
    }

    /// The file this loader reads, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads every source, merges them and validates the result.
    pub fn load(&self) -> Result<StackConfig, ConfigError> {
        let mut sources = Figment::new();
        if let Some(path) = &self.file {
            // Read first for a clear error: figment treats a missing file as empty.
            std::fs::metadata(path).map_err(|error| ConfigError::Read {
                path: path.clone(),
                reason: error.to_string(),
            })?;
            sources = sources.merge(Toml::file_exact(path));
        }
        if let Some(text) = &self.toml {
            sources = sources.merge(Toml::string(text));
        }
        sources = sources.merge(EnvVars(self.env.clone()));
        let profile = match sources.find_value("profile") {
            Ok(value) => value
                .deserialize::<Profile>()
                .map_err(|error| describe(&sources, error.with_path("profile")))?,
            Err(_) => self.profile,
        };
        let figment =
            Figment::from(Serialized::defaults(StackConfig::for_profile(profile))).merge(sources);
        let config: StackConfig = figment
            .extract()
            .map_err(|error| describe(&figment, error))?;
        config.validate().map_err(|mut invalid| {
            invalid.origin = origin(&figment, &invalid.field);
            ConfigError::Invalid(invalid)
        })?;
        Ok(config)
    }
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ConfigLoader")
            .field("profile", &self.profile)
            .field("file", &self.file)
            .field("toml", &self.toml.as_ref().map(|_| "…"))
            .field("env", &names)
            .finish()
    }
}

/// Environment variables as a figment source: `QDRANT_TOWER__A__B` is key `a.b`, its value
/// parsed like TOML's scalars (a number, a boolean, else a string); `QDRANT_URL` (comma-
/// separated) is `endpoints` and `QDRANT_API_KEY` is `api_key`, both kept as strings.
struct EnvVars(Vec<(String, String)>);

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| env_name(keys))
    }

    fn data(&self) -> Result<Map<figment::Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, raw) in &self.0 {
            let (path, value): (Vec<String>, Value) = match name.as_str() {
                "QDRANT_URL" => (vec!["endpoints".into()], comma_list(raw)),
                "QDRANT_API_KEY" => (vec!["api_key".into()], Value::from(raw.clone())),
                _ => {
                    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                        continue;
                    };
                    let path: Vec<String> = rest
                        .split("__")
                        .map(|part| part.to_ascii_lowercase())
                        .collect();
                    if path.iter().any(String::is_empty) {
                        continue;
                    }
                    let value = match path.as_slice() {
                        [key] if key == "api_key" || key == "name" => Value::from(raw.clone()),
                        [section, key] if section == "admin" && key == "token" => {
                            Value::from(raw.clone())
                        }
                        [section, key]
                            if (section == "cache" || section == "queue")
                                && key == "collections"
                                || section == "fallback" && key == "on"
                                || section == "hedge" && key == "operations" =>
                        {
                            comma_list(raw)
                        }
                        [section, key] if section == "queue" && key == "dir" => {
                            Value::from(raw.clone())
                        }
                        [key] if key == "endpoints" => comma_list(raw),
                        _ => scalar(raw),
                    };
                    (path, value)
                }
            };
            insert(&mut dict, &path, value);
        }
        Ok(Map::from([(figment::Profile::Default, dict)]))
    }
}

/// A comma-separated environment value as a list of strings (empty items dropped).
fn comma_list(raw: &str) -> Value {
    Value::from(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    )
}

/// An environment value as TOML would read it unquoted: a boolean, an integer, a float, or
/// else the string itself.
fn scalar(raw: &str) -> Value {
    let trimmed = raw.trim();
    if let Ok(flag) = trimmed.parse::<bool>() {
        Value::from(flag)
    } else if let Ok(n) = trimmed.parse::<u64>() {
        Value::from(n)
    } else if let Ok(n) = trimmed.parse::<i64>() {
        Value::from(n)
    } else if let Ok(x) = trimmed.parse::<f64>()
        && trimmed.contains(['.', 'e', 'E'])
        && x.is_finite()
    {
        Value::from(x)
    } else {
        Value::from(raw.to_owned())
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

fn env_name<S: AsRef<str>>(keys: &[S]) -> String {
    let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    match keys.as_slice() {
        ["api_key"] => "QDRANT_API_KEY".to_owned(),
        ["endpoints"] => "QDRANT_URL".to_owned(),
        _ => format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase()),
    }
}

/// Where `field` (`a.b` or `endpoints[0]`) came from, if not the profile's defaults.
fn origin(figment: &Figment, field: &str) -> Option<String> {
    let key = field.split('[').next().unwrap_or(field);
    let metadata = figment.find_metadata(key)?;
    describe_source(metadata, key)
}

fn describe_source(metadata: &Metadata, key: &str) -> Option<String> {
    if metadata.name.starts_with("Serialized") {
        return None;
    }
    let keys: Vec<&str> = key.split('.').collect();
    match &metadata.source {
        Some(figment::Source::File(path)) => Some(format!("in {}", path.display())),
        _ if metadata.name == "environment variable" => {
            Some(format!("from environment variable {}", env_name(&keys)))
        }
        _ => Some(format!("in {}", metadata.name)),
    }
}

/// A figment error as ours: the key, the source, and for an unknown key the closest known
/// one.
fn describe(figment: &Figment, error: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let error = error.into_iter().next().expect("an error has at least one");
    let key = error
        .path
        .iter()
        .filter(|p| p.as_str() != "default")
        .cloned()
        .collect::<Vec<_>>()
        .join(".");
    let origin = error
        .metadata
        .as_ref()
        .and_then(|metadata| describe_source(metadata, &key));
    match &error.kind {
        Kind::UnknownField(field, expected) | Kind::UnknownVariant(field, expected) => {
            // Figment's path already ends with an unknown field's name; not so for a value.
            let full = if key.is_empty() {
                field.clone()
            } else {
                key.clone()
            };
            let origin = origin.or_else(|| describe_figment_key(figment, &full));
            ConfigError::Unknown {
                what: if matches!(error.kind, Kind::UnknownField(..)) {
                    "key"
                } else {
                    "value"
                },
                key: full,
                given: field.clone(),
                suggestion: closest(field, expected),
                expected,
                origin,
            }
        }
        // A wrong-typed secret: figment's message would quote it.
        _ if key == "api_key" || key == "admin.token" => ConfigError::Parse {
            key,
            reason: "must be a string (the value is not shown: it is a secret)".to_owned(),
            origin,
        },
        _ => ConfigError::Parse {
            key,
            reason: error.kind.to_string(),
            origin,
        },
    }
}

fn describe_figment_key(figment: &Figment, key: &str) -> Option<String> {
    describe_source(figment.find_metadata(key)?, key)
}

/// The known name closest to `given`, if one is close enough to be a typo.
fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(given, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A value out of range, named: field, value, reason and (when loaded) the source.
///
/// ```
/// use qdrant_tower::config::{ConfigError, ConfigLoader};
/// let error = ConfigLoader::new()
///     .env_vars([("QDRANT_TOWER__CONNECTIONS__MAX", "0")])
///     .load()
///     .unwrap_err();
/// let ConfigError::Invalid(invalid) = error else { unreachable!() };
/// assert_eq!((invalid.field(), invalid.value()), ("connections.max", "0"));
/// assert_eq!(invalid.origin(), Some("from environment variable QDRANT_TOWER__CONNECTIONS__MAX"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig {
    field: String,
    value: String,
    reason: String,
    origin: Option<String>,
}

impl InvalidConfig {
    /// A layer's own check failing, in `section` (`retry`, `breaker`, `health`).
    pub(crate) fn from_layer(section: &str, error: &qdrant_tower_layers::ConfigError) -> Self {
        InvalidConfig {
            field: format!("{section}.{}", error.field()),
            value: String::new(),
            reason: error.to_string(),
            origin: None,
        }
    }

    /// The key, as in the file (`retry.unavailable.max_delay`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The value as given (never the API key's).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it cannot work.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Where it came from (`in /etc/app/qdrant.toml`, `from environment variable …`), or
    /// `None` for a value set in code or a profile default.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.reason)?;
        } else {
            write!(f, "{} ({}) {}", self.field, self.value, self.reason)?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " ({origin})")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidConfig {}

/// Why a configuration could not be loaded or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A key or value the configuration does not know.
    #[error(
        "unknown {what} `{given}` at `{key}`{}{}",
        origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default(),
        suggestion.as_ref().map(|s| format!(": did you mean `{s}`?")).unwrap_or_else(|| format!("; expected one of: {}", expected.join(", ")))
    )]
    Unknown {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The full key (`breaker.failure_treshold`).
        key: String,
        /// The unknown name as written.
        given: String,
        /// The closest known name, if one is close.
        suggestion: Option<&'static str>,
        /// Every known name at that place.
        expected: &'static [&'static str],
        /// Where it came from.
        origin: Option<String>,
    },
    /// A value of the wrong type or form (TOML syntax errors too).
    #[error(
        "{}{reason}{}",
        if key.is_empty() { String::new() } else { format!("{key}: ") },
        origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default()
    )]
    Parse {
        /// The key (empty for a syntax error).
        key: String,
        /// What was wrong.
        reason: String,
        /// Where it came from.
        origin: Option<String>,
    },
    /// A value out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_default_is_valid_and_round_trips_through_its_sources() {
        for profile in Profile::ALL {
            let config = StackConfig::for_profile(profile);
            config.validate().unwrap();
            let loaded = ConfigLoader::new().profile(profile).load().unwrap();
            assert_eq!(loaded, config, "{profile}");
            assert_eq!(
                config.retry_policy().kind(ErrorKind::RateLimited),
                profile.retry().kind(ErrorKind::RateLimited)
            );
        }
    }

    #[test]
    fn closest_suggests_only_near_names() {
        let known = ["failure_threshold", "failure_rate", "open_wait"];
        assert_eq!(
            closest("failure_treshold", &known),
            Some("failure_threshold")
        );
        assert_eq!(closest("open_wiat", &known), Some("open_wait"));
        assert_eq!(closest("colour", &known), None);
    }
}
