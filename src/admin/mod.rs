//! The admin API and status page (feature `admin`): an axum [`Router`] over a
//! [`QdrantStack`]'s breakers, health check, metrics and configuration, to mount in your own
//! app ([`QdrantStack::admin`]).
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the status page: breakers, health, alerts and request/error rates, refreshing itself |
//! | `GET /live` | `200` always: the process answers (a liveness probe never depends on Qdrant) |
//! | `GET /health` | `200` ready / `503` not, with the reasons: a readiness probe |
//! | `GET /breakers`, `GET /breakers/{name}` | snapshots (names URL-encoded: `qdrant%2Fdocs`) |
//! | `POST /breakers/reset` (`?tag=` for one tag), `POST /breakers/{name}/reset` | close and forget |
//! | `POST /breakers/{name}/force-open`, `POST /breakers/{name}/disable` | hold open / let all through (until a reset) |
//! | `PUT /breakers/config` | the stack's breaker thresholds, as a [hot reload](QdrantStack::reload) |
//! | `PUT /breakers/{name}/config` | one breaker's thresholds (validated the same way) |
//! | `GET /config` | the configuration running now (the API key redacted) |
//! | `GET /metrics` | Prometheus text ([`observe::prometheus`](crate::observe::prometheus)) |
//! | `GET /alerts` | breakers open longer than a bound, error rates over a bound, health down |
//! | `POST /test-service` | probe Qdrant N times, report latency percentiles and outcomes |
//! | `GET /endpoints` | each endpoint: connections, calls in flight and sent, whether outlier detection ejected it, how often, whether discovery retired it, its Qdrant peer id |
//! | `GET /queue` | the write-behind queue: records and bytes waiting, per collection, replayed, dead letters, what replay waits on (`404` without a queue) |
//! | `GET /queue/dead-letters` | the writes Qdrant rejected for good during replay, with their errors |
//!
//! Threshold bodies are JSON with any of `failure_threshold`, `failure_rate`, `minimum_calls`,
//! `open_wait` (`"30s"`), `half_open_trials`, `half_open_successes`.
//!
//! # Auth
//! Mutations (`POST`, `PUT`) need `Authorization: Bearer <token>`, compared in constant time;
//! without a token configured they are refused (`403`). Reads are open unless
//! [`AdminConfig::protect_reads`]. A missing or wrong token is `401` and logged, without the
//! token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tower::ServiceExt;

use qdrant_tower_client::{VectorError, VectorRequest};
use qdrant_tower_layers::breaker::{Breaker, BreakerState};

use crate::QdrantStack;
use crate::config::{BreakerSettings, ConfigError, Secret};
use crate::observe::PrometheusHandle;
use crate::stack::Control;

/// How the admin router is protected and what it alerts on.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower::admin::AdminConfig;
///
/// let config = AdminConfig::new()
///     .token(std::env::var("ADMIN_TOKEN").ok())
///     .protect_reads(true)
///     .open_alert_after(Duration::from_secs(120));
/// # drop(config);
/// ```
#[derive(Clone)]
#[must_use]
pub struct AdminConfig {
    token: Option<Secret>,
    protect_reads: bool,
    open_alert_after: Duration,
    error_rate_alert: f64,
    prometheus: Option<PrometheusHandle>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            protect_reads: false,
            open_alert_after: Duration::from_secs(300),
            error_rate_alert: 0.2,
            prometheus: None,
        }
    }
}

impl AdminConfig {
    /// No token (mutations refused), open reads, alerts after 5 minutes open or a 20% error
    /// rate (the seeds' rules), no Prometheus handle.
    pub fn new() -> Self {
        AdminConfig::default()
    }

    /// The token, read access and alert bounds of a configuration's `[admin]` section
    /// (`QDRANT_TOWER__ADMIN__TOKEN`, …); add a Prometheus handle yourself.
    ///
    /// ```
    /// use qdrant_tower::admin::AdminConfig;
    /// use qdrant_tower::config::ConfigLoader;
    ///
    /// let config = ConfigLoader::new()
    ///     .env_vars([("QDRANT_TOWER__ADMIN__TOKEN", "s3cret"), ("QDRANT_TOWER__ADMIN__PROTECT_READS", "true")])
    ///     .load()?;
    /// let admin = AdminConfig::from_config(&config);
    /// assert!(!format!("{admin:?}").contains("s3cret"));
    /// # Ok::<(), qdrant_tower::config::ConfigError>(())
    /// ```
    pub fn from_config(config: &crate::config::StackConfig) -> Self {
        let settings = &config.admin;
        AdminConfig {
            token: settings.token.clone(),
            protect_reads: settings.protect_reads,
            open_alert_after: settings.open_alert_after,
            error_rate_alert: settings.error_rate_alert,
            prometheus: None,
        }
    }

    /// The bearer token mutations (and protected reads) need; `None` refuses mutations.
    pub fn token(mut self, token: Option<impl Into<String>>) -> Self {
        self.token = token
            .map(|t| Secret::new(t.into()))
            .filter(|t| !t.expose().is_empty());
        self
    }

    /// Whether reads need the token too. Default: no.
    pub fn protect_reads(mut self, on: bool) -> Self {
        self.protect_reads = on;
        self
    }

    /// A breaker open longer than this is a critical alert. Default 5 minutes.
    pub fn open_alert_after(mut self, bound: Duration) -> Self {
        self.open_alert_after = bound;
        self
    }

    /// A breaker whose window's failure rate (or, without a window, share of failed calls)
    /// passes this is a warning. Default 0.2.
    pub fn error_rate_alert(mut self, rate: f64) -> Self {
        self.error_rate_alert = rate;
        self
    }

    /// Serves `GET /metrics` from this handle (else `GET /metrics` answers `404`).
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token)
            .field("protect_reads", &self.protect_reads)
            .field("open_alert_after", &self.open_alert_after)
            .field("error_rate_alert", &self.error_rate_alert)
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}

struct Admin {
    control: Arc<Control>,
    config: AdminConfig,
}

type Shared = Arc<Admin>;

impl<S> QdrantStack<S> {
    /// The admin API and status page over this stack, as a router to mount (see the
    /// [`admin`](crate::admin) module).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use qdrant_tower::QdrantStack;
    /// use qdrant_tower::admin::AdminConfig;
    ///
    /// let prometheus = qdrant_tower::observe::prometheus()?; // before building the stack
    /// let stack = QdrantStack::builder().build()?;
    /// let admin = stack.admin(
    ///     AdminConfig::new()
    ///         .token(std::env::var("ADMIN_TOKEN").ok())
    ///         .prometheus(prometheus),
    /// );
    /// let app = axum::Router::new().nest("/admin", admin);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    /// axum::serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub fn admin(&self, config: AdminConfig) -> Router {
        let shared = Arc::new(Admin {
            control: Arc::clone(&self.control),
            config,
        });
        Router::new()
            .route("/", get(page))
            .route("/live", get(|| async { "ok" }))
            .route("/health", get(health))
            .route("/breakers", get(breakers))
            .route("/breakers/reset", post(reset_all))
            .route("/breakers/config", put(configure_stack))
            .route("/breakers/{name}", get(breaker))
            .route("/breakers/{name}/{action}", post(breaker_action))
            .route("/breakers/{name}/config", put(configure_one))
            .route("/config", get(running_config))
            .route("/metrics", get(metrics))
            .route("/alerts", get(alerts))
            .route("/test-service", post(test_service))
            .route("/endpoints", get(endpoints))
            .route("/queue", get(queue))
            .route("/queue/dead-letters", get(dead_letters))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                auth,
            ))
            .with_state(shared)
    }
}

/// An answer refused or failed: status and a JSON reason.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("ascii"));
        }
        response
    }
}

type Answer = Result<Response, Refusal>;

/// Every route but the page and liveness: lets a request through if the token allows it.
async fn auth(State(admin): State<Shared>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/" | "" | "/live") {
        return next.run(request).await;
    }
    match authorize(&admin, request.method(), path, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Mutations always need the token, reads when protected.
fn authorize(
    admin: &Admin,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let mutation = !matches!(*method, Method::GET | Method::HEAD);
    if !mutation && !admin.config.protect_reads {
        return Ok(());
    }
    let Some(token) = &admin.config.token else {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "no admin token is configured: changes are disabled".to_owned(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let good =
        given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())));
    if good {
        return Ok(());
    }
    tracing::warn!(
        %method,
        path,
        token_given = given.is_some(),
        "admin request refused: missing or wrong bearer token"
    );
    Err(Refusal(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required".to_owned(),
    ))
}

/// The page holds no data of its own: it asks the JSON routes (with a token, if reads need
/// one, that the user types in), so it is served to anyone.
async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = include_str!("page.html");

/// One breaker as JSON.
#[derive(Serialize)]
struct BreakerView {
    name: String,
    tag: Option<String>,
    state: &'static str,
    /// Since when (seconds ago) the breaker is in its state.
    in_state_for_secs: f64,
    last_transition: &'static str,
    calls: u64,
    successes: u64,
    failures: u64,
    rejections: u64,
    slow_calls: u64,
    consecutive_failures: u32,
    failure_rate: Option<f64>,
    availability: f64,
    opens_in_secs: Option<f64>,
    config: BreakerSettingsView,
}

#[derive(Serialize)]
struct BreakerSettingsView {
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    minimum_calls: u32,
    open_wait_secs: f64,
    half_open_trials: u32,
    half_open_successes: u32,
}

fn view(breaker: &Breaker) -> BreakerView {
    let snapshot = breaker.snapshot();
    let change = *breaker.watch().borrow();
    let config = breaker.config();
    BreakerView {
        name: snapshot.name.to_string(),
        tag: snapshot.tag.as_deref().map(str::to_owned),
        state: snapshot.state.as_str(),
        in_state_for_secs: Instant::now()
            .saturating_duration_since(change.at)
            .as_secs_f64(),
        last_transition: change.reason.as_str(),
        calls: snapshot.calls,
        successes: snapshot.successes,
        failures: snapshot.failures,
        rejections: snapshot.rejections,
        slow_calls: snapshot.slow_calls,
        consecutive_failures: snapshot.consecutive_failures,
        failure_rate: snapshot.window.map(|w| w.failure_rate),
        availability: snapshot.availability,
        opens_in_secs: snapshot.time_until_half_open.map(|d| d.as_secs_f64()),
        config: BreakerSettingsView {
            failure_threshold: config.consecutive_failures(),
            failure_rate: config.failure_rate(),
            minimum_calls: config.minimum_calls(),
            open_wait_secs: config.open_wait().base(0).as_secs_f64(),
            half_open_trials: config.half_open_trials(),
            half_open_successes: config.half_open_successes(),
        },
    }
}

fn json(status: StatusCode, value: impl Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

fn find(admin: &Admin, name: &str) -> Result<Breaker, Refusal> {
    admin
        .control
        .registry()
        .get(name)
        .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("no breaker named `{name}`")))
}

async fn endpoints(State(admin): State<Shared>) -> Answer {
    let endpoints: Vec<_> = admin
        .control
        .bare()
        .pool_stats()
        .into_iter()
        .map(|pool| {
            json!({
                "endpoint": pool.endpoint,
                "connections": pool.connections,
                "in_flight": pool.in_flight,
                "calls": pool.calls,
                "ejected": pool.ejected,
                "ejections": pool.ejections,
                "retired": pool.retired,
                // A string: peer ids pass 2^53, past what a JSON reader's doubles hold.
                "peer_id": pool.peer_id.map(|id| id.to_string()),
                "replaced_connections": pool.replaced,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, endpoints))
}

fn write_behind(admin: &Admin) -> Result<&crate::queue::WriteBehindHandle, Refusal> {
    admin.control.queue().ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            "this stack has no write-behind queue (configure [queue] collections)".into(),
        )
    })
}

async fn queue(State(admin): State<Shared>) -> Answer {
    Ok(json(StatusCode::OK, write_behind(&admin)?.stats()))
}

async fn dead_letters(State(admin): State<Shared>) -> Answer {
    let letters = write_behind(&admin)?.dead_letters().map_err(|error| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the dead-letter file cannot be read: {error}"),
        )
    })?;
    Ok(json(StatusCode::OK, letters))
}

async fn breakers(State(admin): State<Shared>) -> Answer {
    let views: Vec<BreakerView> = admin.control.registry().list().iter().map(view).collect();
    Ok(json(StatusCode::OK, views))
}

async fn breaker(State(admin): State<Shared>, Path(name): Path<String>) -> Answer {
    Ok(json(StatusCode::OK, view(&find(&admin, &name)?)))
}

#[derive(Deserialize)]
struct TagQuery {
    tag: Option<String>,
}

async fn reset_all(State(admin): State<Shared>, Query(query): Query<TagQuery>) -> Answer {
    let registry = admin.control.registry();
    let reset = match &query.tag {
        Some(tag) => registry.reset_tag(tag),
        None => registry.reset_all(),
    };
    tracing::info!(reset, tag = query.tag.as_deref(), "admin: breakers reset");
    Ok(json(StatusCode::OK, json!({ "reset": reset })))
}

/// `POST /breakers/{name}/{action}`: `reset`, `force-open` or `disable`.
async fn breaker_action(
    State(admin): State<Shared>,
    Path((name, action)): Path<(String, String)>,
) -> Answer {
    let change: fn(&Breaker) = match action.as_str() {
        "reset" => Breaker::reset,
        "force-open" => Breaker::force_open,
        "disable" => Breaker::disable,
        other => {
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`: reset, force-open or disable"),
            ));
        }
    };
    let breaker = find(&admin, &name)?;
    change(&breaker);
    tracing::info!(breaker = name, action, "admin: breaker changed");
    Ok(json(StatusCode::OK, view(&breaker)))
}

/// A change of breaker thresholds: any subset of the file's `[breaker]` keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Thresholds {
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    minimum_calls: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    open_wait: Option<Duration>,
    half_open_trials: Option<u32>,
    half_open_successes: Option<u32>,
}

impl Thresholds {
    fn apply(&self, settings: &mut BreakerSettings) {
        if let Some(n) = self.failure_threshold {
            settings.failure_threshold = n;
        }
        if let Some(rate) = self.failure_rate {
            settings.failure_rate = Some(rate);
        }
        if let Some(n) = self.minimum_calls {
            settings.minimum_calls = n;
        }
        if let Some(wait) = self.open_wait {
            settings.open_wait = wait;
        }
        if let Some(n) = self.half_open_trials {
            settings.half_open_trials = n;
        }
        if let Some(n) = self.half_open_successes {
            settings.half_open_successes = n;
        }
    }
}

fn thresholds(body: &[u8]) -> Result<Thresholds, Refusal> {
    serde_json::from_slice(body)
        .map_err(|error| Refusal(StatusCode::BAD_REQUEST, format!("bad thresholds: {error}")))
}

fn invalid(error: ConfigError) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, error.to_string())
}

async fn configure_stack(State(admin): State<Shared>, body: axum::body::Bytes) -> Answer {
    let change = thresholds(&body)?;
    let mut config = admin.control.current();
    change.apply(&mut config.breaker);
    let reloaded = admin.control.reload(config).map_err(invalid)?;
    tracing::info!(applied = ?reloaded.applied, "admin: breaker thresholds reloaded");
    Ok(json(
        StatusCode::OK,
        json!({ "applied": reloaded.applied, "needs_restart": reloaded.needs_restart }),
    ))
}

async fn configure_one(
    State(admin): State<Shared>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let breaker = find(&admin, &name)?;
    let change = thresholds(&body)?;
    // Validated as a reload would validate it: the whole configuration with these thresholds.
    let mut config = admin.control.current();
    let current = breaker.config();
    config.breaker.failure_threshold = current.consecutive_failures().unwrap_or(5);
    config.breaker.failure_rate = current.failure_rate();
    config.breaker.minimum_calls = current.minimum_calls();
    config.breaker.open_wait = current.open_wait().base(0);
    config.breaker.half_open_trials = current.half_open_trials();
    config.breaker.half_open_successes = current.half_open_successes();
    change.apply(&mut config.breaker);
    config
        .validate()
        .map_err(|error| invalid(ConfigError::Invalid(error)))?;
    breaker
        .reconfigure(config.breaker_config())
        .map_err(|error| Refusal(StatusCode::BAD_REQUEST, error.to_string()))?;
    tracing::info!(breaker = name, "admin: breaker thresholds changed");
    Ok(json(StatusCode::OK, view(&breaker)))
}

async fn running_config(State(admin): State<Shared>) -> Answer {
    Ok(json(StatusCode::OK, admin.control.current()))
}

async fn metrics(State(admin): State<Shared>) -> Answer {
    let Some(prometheus) = &admin.config.prometheus else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "no Prometheus handle: give one to AdminConfig::prometheus".to_owned(),
        ));
    };
    prometheus.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus.render(),
    )
        .into_response())
}

/// Why the stack is not ready, if it is not: health down, or the stack's one breaker open.
fn not_ready(admin: &Admin) -> Vec<String> {
    let mut reasons = Vec::new();
    let health = admin.control.health();
    if !health.status().is_healthy() {
        let snapshot = health.snapshot();
        reasons.push(format!(
            "health check `{}` failing ({} probes in a row){}",
            health.config().name(),
            snapshot.consecutive_failures,
            snapshot
                .last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    if let Some(breaker) = admin.control.single_breaker() {
        let state = breaker.state();
        if matches!(state, BreakerState::Open | BreakerState::ForcedOpen) {
            reasons.push(format!(
                "breaker `{}` is {}",
                breaker.name(),
                state.as_str()
            ));
        }
    }
    reasons
}

async fn health(State(admin): State<Shared>) -> Answer {
    let reasons = not_ready(&admin);
    let health = admin.control.health();
    let snapshot = health.snapshot();
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json(
        status,
        json!({
            "ready": reasons.is_empty(),
            "reasons": reasons,
            "health": {
                "name": health.config().name(),
                "status": if health.status().is_healthy() { "healthy" } else { "unhealthy" },
                "consecutive_failures": snapshot.consecutive_failures,
                "consecutive_successes": snapshot.consecutive_successes,
                "probes": snapshot.probes,
                "last_error": snapshot.last_error,
            },
        }),
    ))
}

/// An alert as JSON.
#[derive(Serialize)]
struct Alert {
    severity: &'static str,
    kind: &'static str,
    subject: String,
    message: String,
}

fn active_alerts(admin: &Admin) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let bound = admin.config.open_alert_after;
    let rate_bound = admin.config.error_rate_alert;
    let mut open = 0;
    for breaker in admin.control.registry().list() {
        let view = view(&breaker);
        let state = breaker.state();
        if matches!(state, BreakerState::Open | BreakerState::ForcedOpen) {
            open += 1;
            if view.in_state_for_secs >= bound.as_secs_f64() {
                alerts.push(Alert {
                    severity: "critical",
                    kind: "breaker_open_too_long",
                    subject: view.name.clone(),
                    message: format!(
                        "breaker `{}` has been {} for {:.0} s (bound {} s)",
                        view.name,
                        state.as_str(),
                        view.in_state_for_secs,
                        bound.as_secs()
                    ),
                });
            }
        }
        if state == BreakerState::HalfOpen {
            alerts.push(Alert {
                severity: "warning",
                kind: "breaker_half_open",
                subject: view.name.clone(),
                message: format!("breaker `{}` is trying Qdrant again (half-open)", view.name),
            });
        }
        let rate = view.failure_rate.unwrap_or_else(|| {
            let counted = view.successes + view.failures;
            if counted == 0 {
                0.0
            } else {
                view.failures as f64 / counted as f64
            }
        });
        if rate > rate_bound {
            alerts.push(Alert {
                severity: "warning",
                kind: "error_rate",
                subject: view.name.clone(),
                message: format!(
                    "breaker `{}` sees {:.0}% of calls fail (bound {:.0}%)",
                    view.name,
                    rate * 100.0,
                    rate_bound * 100.0
                ),
            });
        }
    }
    if open > 1 {
        alerts.push(Alert {
            severity: "critical",
            kind: "several_breakers_open",
            subject: "breakers".to_owned(),
            message: format!("{open} breakers are open at once"),
        });
    }
    let health = admin.control.health();
    if !health.status().is_healthy() {
        alerts.push(Alert {
            severity: "critical",
            kind: "health_down",
            subject: health.config().name().to_owned(),
            message: not_ready(admin)
                .into_iter()
                .next()
                .unwrap_or_else(|| "health check failing".to_owned()),
        });
    }
    alerts
}

async fn alerts(State(admin): State<Shared>) -> Answer {
    Ok(json(StatusCode::OK, active_alerts(&admin)))
}

/// What `POST /test-service` sends: N probes, the health RPC or a count of a collection.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    #[serde(default = "three")]
    iterations: u32,
    /// Count the points of this collection instead of the health RPC.
    collection: Option<String>,
}

fn three() -> u32 {
    3
}

/// The most probes one `POST /test-service` runs.
pub const MAX_TEST_ITERATIONS: u32 = 100;

async fn test_service(State(admin): State<Shared>, body: axum::body::Bytes) -> Answer {
    let test: TestRequest = if body.is_empty() {
        TestRequest {
            iterations: three(),
            collection: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| Refusal(StatusCode::BAD_REQUEST, format!("bad test: {error}")))?
    };
    if !(1..=MAX_TEST_ITERATIONS).contains(&test.iterations) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "iterations ({}) must be between 1 and {MAX_TEST_ITERATIONS}",
                test.iterations
            ),
        ));
    }
    // Straight to Qdrant (not through the breaker or the gate, which may be what is being
    // checked), each probe bounded by the attempt timeout.
    let service = admin.control.bare();
    let timeout = admin.control.current().attempt_timeout;
    let mut latencies = Vec::with_capacity(test.iterations as usize);
    let mut outcomes = std::collections::BTreeMap::<&'static str, u32>::new();
    let mut last_error = None::<String>;
    for _ in 0..test.iterations {
        let request = match &test.collection {
            None => VectorRequest::health_check(),
            Some(name) => VectorRequest::from(
                qdrant_tower_client::qdrant::CountPointsBuilder::new(name).exact(false),
            ),
        };
        let started = Instant::now();
        let result: Result<_, VectorError> =
            service.clone().oneshot(request.with_timeout(timeout)).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => {
                last_error = Some(error.to_string());
                error.kind().as_str()
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(json(
        StatusCode::OK,
        json!({
            "probe": if test.collection.is_some() { "count" } else { "health_check" },
            "iterations": test.iterations,
            "ok": outcomes.get("ok").copied().unwrap_or(0),
            "outcomes": outcomes,
            "latency_ms": {
                "min": latencies[0],
                "p50": pick(0.5),
                "p90": pick(0.9),
                "p99": pick(0.99),
                "max": latencies[latencies.len() - 1],
            },
            "last_error": last_error,
        }),
    ))
}
