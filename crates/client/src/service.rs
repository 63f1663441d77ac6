//! `QdrantService`: the `Service<VectorRequest>` at the bottom of every stack.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use qdrant_tower_layers::clock::Now;
use qdrant_tower_layers::{
    ConfigError as LayerConfigError, ErrorKind, HealthCheck, HealthConfig, RequestInfo,
};
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{ClientTlsConfig, Endpoint};
use tower_service::Service;

use crate::discovery::{Discovery, DiscoveryReport};
use crate::endpoints::{Balance, EndpointSet, OutlierDetection, Router};
use crate::error::VectorError;
use crate::pool::{EndpointPool, InFlight, Picked, PoolSettings, PoolStats};
use crate::request::{VectorRequest, VectorResponse, dispatch};
use crate::validate::Limits;

/// The metadata key Qdrant reads the API key from.
const API_KEY_HEADER: &str = "api-key";
/// How close to a call's limit a server's `CANCELLED` counts as that limit running out (see
/// `VectorError::cancelled_at_deadline`): timers round to the millisecond.
const DEADLINE_SLACK: Duration = Duration::from_millis(2);

/// A [`tower::Service`] that sends each [`VectorRequest`] to Qdrant over gRPC.
///
/// It uses qdrant-client's generated tonic clients directly — not the high-level `Qdrant`
/// client, whose channel pool retries once, immediately and blindly, even writes. This service
/// sends each request exactly once: retrying is the job of the retry layer, which knows the
/// error kind and whether the request is idempotent.
///
/// The big writes (upsert, update vectors, update batch) are sent over the same RPCs with
/// tonic's `Grpc` client and a prost codec that encodes the message where the request holds
/// it: a [`VectorRequest`] shares its operation with its clones (the retry layer keeps one),
/// and copying thousands of vectors for each call would cost more than the layers do. Other
/// operations use the generated clients, which take the message by value.
///
/// Each call is validated first ([`VectorRequest::validate`]); an invalid request fails with
/// [`ErrorKind::InvalidRequest`] without touching the network. Every failure is a
/// [`VectorError`] with its [`ErrorKind`].
///
/// # Timeouts and deadlines
/// Without a deadline on the request, a call is bounded by the configured
/// [request timeout](QdrantServiceBuilder::request_timeout). A request may carry a deadline
/// ([`VectorRequest::with_deadline`], [`VectorRequest::with_timeout`], or set by a deadline,
/// retry or attempt-timeout layer above). Then:
/// - if the deadline has passed, the call fails at once with [`ErrorKind::Timeout`] and
///   [`maybe_sent`](qdrant_tower_layers::Classify::maybe_sent) `false`: nothing is sent;
/// - otherwise the call's timeout is the smaller of the request timeout and the time left. It
///   is sent as `grpc-timeout` (Qdrant drops a call nobody waits for), enforced on the client
///   over the whole call (response body included), and written to the message's own
///   server-side `timeout` field where the message has one ([`VectorOp::server_timeout`]): in
///   whole seconds, rounded up (at least 1), keeping a smaller value the caller set. The big
///   writes, sent straight from the shared request (see above), are not modified: the field
///   follows the message on the wire as a second encoding of the same message type that holds
///   only it, which protobuf decodes as a merge, so Qdrant reads the message with the field
///   set.
///
/// The configured request timeout alone never touches the message's `timeout` field.
///
/// [`VectorOp::server_timeout`]: crate::VectorOp::server_timeout
///
/// # Channels
/// The service holds one or more tonic [`Channel`](tonic::transport::Channel)s (one HTTP/2 connection each:
/// `connections_per_endpoint` per endpoint) and spreads calls over them round-robin. Channels
/// connect lazily and reconnect by themselves, so building the service never fails because
/// Qdrant is down; [`QdrantServiceBuilder::connect`] checks the connections eagerly.
///
/// # Readiness
/// `poll_ready` reserves a slot on the channel the next call will use and reports that
/// channel's own readiness; `call` uses exactly that channel. Clones share the channels but
/// not the reservation, as with any tower service.
///
/// # Example
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use qdrant_client::qdrant::SearchPointsBuilder;
/// use qdrant_tower_client::{QdrantService, VectorResponse};
/// use tower::ServiceExt;
///
/// let service = QdrantService::builder()
///     .endpoint("http://localhost:6334")
///     .api_key(std::env::var("QDRANT_API_KEY").ok())
///     .build()?;
/// let response = service
///     .oneshot(SearchPointsBuilder::new("docs", vec![0.1, 0.2, 0.3], 5).into())
///     .await?;
/// if let VectorResponse::Search(found) = response {
///     println!("{} hits", found.result.len());
/// }
/// # Ok(())
/// # }
/// ```
pub struct QdrantService {
    pub(crate) shared: Arc<Shared>,
    /// The channel `poll_ready` reserved a slot on, which the next `call` uses.
    ready: Option<Picked>,
}

pub(crate) struct Shared {
    pub(crate) endpoints: Arc<EndpointSet>,
    pub(crate) router: Router,
    options: CallOptions,
    limits: Limits,
    /// How to reach an endpoint discovery adds: the settings every endpoint shares.
    pub(crate) template: EndpointTemplate,
    /// Endpoint discovery, when configured.
    pub(crate) discovery: Option<crate::discovery::State>,
}

impl Shared {
    /// Counts the outcome of an attempt on its endpoint, for outlier detection.
    fn record(&self, in_flight: &InFlight, outcome: Option<ErrorKind>) {
        if self.endpoints.len() > 1 {
            self.router
                .record(&self.endpoints, in_flight.pool(), outcome);
        }
    }

    /// The endpoint for an attempt that already went to those in `tried` (see
    /// `Router::pick` for `advance`).
    fn endpoint(&self, tried: u64, advance: bool) -> usize {
        self.router.pick(&self.endpoints, tried, advance)
    }
}

impl QdrantService {
    /// A builder with the defaults documented on each of its methods.
    pub fn builder() -> QdrantServiceBuilder {
        QdrantServiceBuilder::default()
    }

    /// A service on one endpoint with every other option at its default.
    ///
    /// Must be called within a Tokio runtime (tonic spawns each channel's worker).
    pub fn from_url(url: impl Into<String>) -> Result<Self, ConfigError> {
        QdrantService::builder().endpoint(url).build()
    }

    /// The limits requests are validated against before sending.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Each endpoint's connections now: how many are open, the calls in flight, and how
    /// often the pool grew, shrank and replaced a failed connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use qdrant_tower_client::QdrantService;
    ///
    /// let service = QdrantService::builder()
    ///     .endpoint("http://localhost:6334")
    ///     .connections(1, 4)
    ///     .grow_at(32)
    ///     .build()?;
    /// let stats = &service.pool_stats()[0];
    /// assert_eq!((stats.connections, stats.min, stats.max), (1, 1, 4));
    /// # Ok(()) }
    /// ```
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let now = Instant::now();
        self.shared
            .endpoints
            .iter()
            .map(|pool| {
                let mut stats = pool.stats();
                stats.ejected = self.shared.router.is_ejected(&pool.health, now);
                stats
            })
            .collect()
    }

    /// Starts a [`HealthCheck`] whose probe is Qdrant's gRPC health-check RPC
    /// ([`VectorRequest::health_check`]) sent over a clone of this service.
    ///
    /// Each probe carries the [probe timeout](HealthConfig::with_probe_timeout) as its
    /// deadline, so Qdrant also learns of it (`grpc-timeout`); a probe fails on any error
    /// (refused connection, timeout, a status) and succeeds on any answer. Give the check to a
    /// [`HealthGateLayer`](qdrant_tower_layers::HealthGateLayer) in front of this service, and
    /// link the stack's breakers to it with [`HealthCheck::link_breaker`]. The probe uses this
    /// bare service, never the gated stack, so that the gate cannot reject its own probes.
    ///
    /// Must be called within a Tokio runtime; fails on a bad `config`, naming the field. The
    /// prober stops when the last handle to the check is dropped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use qdrant_tower_client::QdrantService;
    /// use qdrant_tower_layers::{HealthConfig, HealthGateLayer};
    /// use tower::ServiceBuilder;
    ///
    /// let service = QdrantService::from_url("http://localhost:6334")?;
    /// let check = service.health_check(
    ///     HealthConfig::production()
    ///         .with_name("qdrant")
    ///         .with_interval(Duration::from_secs(5)),
    /// )?;
    /// let gated = ServiceBuilder::new()
    ///     .layer(HealthGateLayer::new(check.clone()))
    ///     .service(service);
    /// if !check.wait_healthy(Duration::from_secs(10)).await {
    ///     eprintln!("qdrant is not answering: {:?}", check.snapshot().last_error);
    /// }
    /// # drop(gated);
    /// # Ok(())
    /// # }
    /// ```
    pub fn health_check(&self, config: HealthConfig) -> Result<HealthCheck, LayerConfigError> {
        HealthCheck::for_service(config, self.clone(), VectorRequest::health_check())
    }

    /// Runs one round of [endpoint discovery](crate::discovery) now — the service also runs
    /// one every interval on its own — and tells what it found and changed.
    ///
    /// Fails with [`ErrorKind::InvalidRequest`] if discovery is not configured
    /// ([`QdrantServiceBuilder::discovery`]), and with the last endpoint's error if none
    /// answered (then nothing changes).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use qdrant_tower_client::QdrantService;
    /// use qdrant_tower_client::discovery::Discovery;
    ///
    /// let service = QdrantService::builder()
    ///     .endpoint("http://10.0.0.5:6334")
    ///     .discovery(Discovery::new())
    ///     .build()?;
    /// let report = service.discover().await?;
    /// println!("{} peers, added {:?}", report.peers.len(), report.added);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn discover(&self) -> Result<DiscoveryReport, VectorError> {
        let Some(state) = &self.shared.discovery else {
            return Err(VectorError::new(
                ErrorKind::InvalidRequest,
                "discover",
                "endpoint discovery is not configured (QdrantServiceBuilder::discovery)",
            )
            .with_maybe_sent(false));
        };
        crate::discovery::round(&self.shared, state).await
    }
}

impl Clone for QdrantService {
    fn clone(&self) -> Self {
        QdrantService {
            shared: Arc::clone(&self.shared),
            ready: None,
        }
    }
}

impl fmt::Debug for QdrantService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantService")
            .field("pools", &self.pool_stats())
            .field("options", &self.shared.options)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl Service<VectorRequest> for QdrantService {
    type Response = VectorResponse;
    type Error = VectorError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let shared = &self.shared;
        let picked = self
            .ready
            .get_or_insert_with(|| shared.endpoints.get(shared.endpoint(0, false)).pick());
        let (pool, slot) = (Arc::clone(&picked.pool), picked.slot);
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut picked.channel, cx).map_err(
            |error| {
                // The channel's worker is gone: its slot gets a new one and the next poll picks.
                self.ready = None;
                pool.replace(slot);
                VectorError::new(ErrorKind::Connect, "poll_ready", error.to_string())
                    .with_source(error)
                    .with_maybe_sent(false)
            },
        )
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        if let Err(error) = request.validate(&self.shared.limits) {
            return ResponseFuture::failed(error);
        }
        let operation = request.operation();
        let configured = self.shared.options.timeout;
        // The layers above read the clock as this call started; their reading is reused.
        let clock = Now::read();
        let now = clock.at();
        // The call's timeout: the configured one, or the time left before the request's
        // deadline when that is shorter.
        let (limit, by_deadline) = match request.deadline() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(now);
                if left.is_zero() {
                    let message = "the request's deadline passed before the call was sent; \
                                   nothing was sent";
                    return ResponseFuture::failed(
                        VectorError::new(ErrorKind::Timeout, operation, message)
                            .with_collection(request.collection())
                            .with_maybe_sent(false),
                    );
                }
                match configured {
                    Some(configured) if configured <= left => (Some(configured), false),
                    _ => (Some(left), true),
                }
            }
            None => (configured, false),
        };
        // With a deadline, Qdrant's own `timeout` field also bounds the work it does for the
        // call (a search stops early, a write with `wait` stops waiting).
        let server_timeout = request.deadline().and(limit);
        let collection = request.collection().map(str::to_owned);
        let op = request.into_shared();
        let tried = op.tried.load(Ordering::Acquire);
        let index = self.shared.endpoint(tried, tried == 0);
        // The channel `poll_ready` reserved, if it is on that endpoint (tonic's client waits
        // for readiness itself otherwise).
        let picked = match self.ready.take() {
            Some(ready) if ready.pool.index == index => ready,
            _ => self.shared.endpoints.get(index).pick(),
        };
        if index < 64 {
            op.tried.fetch_or(1 << index, Ordering::AcqRel);
        }
        let channel = picked.channel;
        let in_flight = InFlight::start(picked.pool, picked.slot);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::called(Box::pin(async move {
            let call = dispatch(channel, &shared.options, op, limit, server_timeout);
            // tonic's own timeout (from `grpc-timeout`) ends when the response headers arrive;
            // this one bounds the whole call, body included.
            let outcome = match limit {
                Some(limit) => match tokio::time::timeout_at(now + limit, call).await {
                    Ok(outcome) => outcome,
                    Err(elapsed) => {
                        let message = if by_deadline {
                            format!(
                                "no complete answer within the {limit:?} left before the \
                                 request's deadline"
                            )
                        } else {
                            format!("no complete answer within the request timeout of {limit:?}")
                        };
                        shared.record(&in_flight, Some(ErrorKind::Timeout));
                        return Err(VectorError::new(ErrorKind::Timeout, operation, message)
                            .with_collection(collection.as_deref())
                            .with_source(elapsed));
                    }
                },
                None => call.await,
            };
            let outcome = outcome.map_err(|status| {
                let error = VectorError::from_status(status, operation, collection.as_deref());
                if error.kind() == ErrorKind::Connect {
                    in_flight.connection_failed();
                }
                at_the_limit(error, limit.map(|limit| now + limit), Instant::now())
            });
            shared.record(&in_flight, outcome.as_ref().err().map(VectorError::kind));
            outcome
        }))
    }
}

/// A `CANCELLED` answered when the call's limit (`ends`) had run out is that limit running out
/// ([`ErrorKind::Timeout`]), whichever of the server's answer and the local timer came first.
/// The server's timer for `grpc-timeout` starts after ours, so its answer arrives at or after
/// our limit; the slack only covers the timers' millisecond rounding.
fn at_the_limit(error: VectorError, ends: Option<Instant>, now: Instant) -> VectorError {
    match ends {
        Some(ends) if now + DEADLINE_SLACK >= ends => error.cancelled_at_deadline(),
        _ => error,
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<VectorResponse, VectorError>> + Send>>;

/// The future of a [`QdrantService`] call.
///
/// The call itself is boxed: the generated tonic clients' futures cannot be named, and one
/// allocation is small beside a gRPC round trip (tonic allocates several per call). A request
/// rejected by validation resolves at once without allocating a future.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Failed(Option<VectorError>),
    Called(BoxFuture),
}

impl ResponseFuture {
    fn failed(error: VectorError) -> Self {
        ResponseFuture {
            state: State::Failed(Some(error)),
        }
    }

    fn called(future: BoxFuture) -> Self {
        ResponseFuture {
            state: State::Called(future),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<VectorResponse, VectorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            State::Called(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What every call carries: credentials, headers, timeout, compression and size limits.
pub(crate) struct CallOptions {
    api_key: Option<AsciiMetadataValue>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    timeout: Option<Duration>,
    compression: bool,
    max_message_size: usize,
}

impl CallOptions {
    /// Wraps `message` in a tonic request with the API key, custom headers and `timeout`
    /// (the call's: the configured request timeout or the time left before the deadline).
    pub(crate) fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        for (key, value) in &self.headers {
            metadata.insert(key.clone(), value.clone());
        }
        if let Some(key) = &self.api_key {
            metadata.insert(API_KEY_HEADER, key.clone());
        }
        if let Some(timeout) = timeout {
            // Sent as `grpc-timeout` so Qdrant stops working on it, and enforced by the channel.
            request.set_timeout(timeout);
        }
        request
    }

    /// Applies compression and message size limits to a generated client.
    pub(crate) fn configure<C: Configure>(&self, client: C) -> C {
        let client = client.max_message_size(self.max_message_size);
        if self.compression {
            client.compressed(CompressionEncoding::Gzip)
        } else {
            client
        }
    }
}

impl fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

/// The knobs every generated tonic client has under its own name.
pub(crate) trait Configure: Sized {
    fn compressed(self, encoding: CompressionEncoding) -> Self;
    fn max_message_size(self, bytes: usize) -> Self;
}

/// Builds a [`QdrantService`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), qdrant_tower_client::ConfigError> {
/// use std::time::Duration;
/// use qdrant_tower_client::QdrantService;
///
/// let service = QdrantService::builder()
///     .endpoint("http://127.0.0.1:6334")
///     .endpoint("http://127.0.0.1:6335")
///     .connections_per_endpoint(2)
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Some(Duration::from_secs(10)))
///     .api_key(Some("secret"))
///     .build()?;
/// assert!(!format!("{service:?}").contains("secret"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct QdrantServiceBuilder {
    endpoints: Vec<String>,
    connections: (usize, usize),
    grow_at: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
    request_timeout: Option<Duration>,
    tls: Option<ClientTlsConfig>,
    api_key: Option<String>,
    compression: bool,
    headers: Vec<(String, String)>,
    max_message_size: usize,
    limits: Limits,
    balance: Balance,
    outlier: OutlierDetection,
    discovery: Option<Discovery>,
}

impl Default for QdrantServiceBuilder {
    fn default() -> Self {
        QdrantServiceBuilder {
            endpoints: Vec::new(),
            connections: (1, 1),
            grow_at: 64,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Some(Duration::from_secs(20)),
            keep_alive_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            tls: None,
            api_key: None,
            compression: false,
            headers: Vec::new(),
            max_message_size: 64 * 1024 * 1024,
            limits: Limits::default(),
            balance: Balance::default(),
            outlier: OutlierDetection::default(),
            discovery: None,
        }
    }
}

impl fmt::Debug for QdrantServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantServiceBuilder")
            .field("endpoints", &self.endpoints)
            .field("connections", &self.connections)
            .field("grow_at", &self.grow_at)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("keep_alive_timeout", &self.keep_alive_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls.is_some())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("compression", &self.compression)
            .field("max_message_size", &self.max_message_size)
            .field("limits", &self.limits)
            .field("balance", &self.balance)
            .field("outlier", &self.outlier)
            .field("discovery", &self.discovery)
            .finish()
    }
}

impl QdrantServiceBuilder {
    /// How calls are spread over several endpoints (default round-robin); see
    /// [`endpoints`](crate::endpoints).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Outlier detection over several endpoints (default on: 5 failures in a row eject an
    /// endpoint for 30 s, growing; at most half out at once); see
    /// [`endpoints`](crate::endpoints).
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = outlier;
        self
    }

    /// Reads a Qdrant cluster's peers from the cluster and follows its membership: the
    /// configured endpoints are the seeds. Default off; see [`discovery`](crate::discovery).
    pub fn discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// Adds an endpoint, such as `http://localhost:6334` (Qdrant's gRPC port) or an `https://`
    /// URL (TLS with the system's roots unless [`tls`](Self::tls) is set). Calls spread over
    /// all endpoints round-robin. At least one is required.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// HTTP/2 connections to open per endpoint. Default 1; more helps past a few hundred
    /// concurrent calls, where one connection's stream limit and single-threaded framing bind.
    pub fn connections_per_endpoint(mut self, connections: usize) -> Self {
        self.connections = (connections, connections);
        self
    }

    /// Connections per endpoint that grow with load: `min` always, one more whenever the
    /// calls in flight on the endpoint reach [`grow_at`](Self::grow_at) per open connection,
    /// up to `max`; one fewer after [`idle_timeout`](Self::idle_timeout) with one fewer
    /// enough. A connection that failed is replaced by a new one (opened on its next call).
    /// [`QdrantService::pool_stats`] shows the pool. Default: 1 and 1.
    pub fn connections(mut self, min: usize, max: usize) -> Self {
        self.connections = (min, max);
        self
    }

    /// Calls in flight per connection past which the pool opens another (up to the
    /// maximum of [`connections`](Self::connections)). Default 64: well under HTTP/2's usual
    /// 100-stream limit per connection.
    pub fn grow_at(mut self, calls: usize) -> Self {
        self.grow_at = calls;
        self
    }

    /// How long the calls in flight must fit in one connection fewer before the pool closes
    /// one (down to the minimum). Default 60 s.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// How long to wait for a TCP (and TLS) connection. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often to send an HTTP/2 PING on a connection, busy or idle, to find a dead peer
    /// (a blackholed connection otherwise looks alive until TCP gives up, minutes later).
    /// Default 20 s; `None` sends none.
    pub fn keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// How long to wait for a PING's answer before closing the connection. Default 10 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// The longest a single call may take, sent to Qdrant as `grpc-timeout` (so it stops
    /// working on a call nobody waits for) and enforced on the client. Default 30 s; `None`
    /// for no timeout (then bound calls with the deadline layers). A request's own deadline
    /// shortens it when less time is left (see [`QdrantService`]).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// TLS settings (rustls). Default: none for `http://`, the system's roots for `https://`.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The API key, sent as the `api-key` header on every call. It never appears in `Debug`
    /// output, logs or errors. Default none.
    pub fn api_key(mut self, key: Option<impl Into<String>>) -> Self {
        self.api_key = key.map(Into::into);
        self
    }

    /// Compress requests and accept compressed responses with gzip. Default off: vectors of
    /// floats compress poorly and the CPU cost usually outweighs the bytes saved.
    pub fn compression(mut self, gzip: bool) -> Self {
        self.compression = gzip;
        self
    }

    /// Adds a header sent with every call (ASCII name and value).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The largest message sent or accepted. Default 64 MiB. Writes are also validated
    /// against it (see [`Limits::max_bytes`]): tonic would otherwise fail an oversized
    /// message mid-stream with an HTTP/2 reset that looks like a broken connection.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The limits requests are validated against before sending. Default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the service with lazily connecting channels: it succeeds while Qdrant is down.
    ///
    /// Must be called within a Tokio runtime (tonic spawns each channel's worker).
    pub fn build(self) -> Result<QdrantService, ConfigError> {
        let prepared = self.prepare()?;
        let settings = prepared.template.settings;
        let pools = prepared
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, (url, endpoint))| {
                EndpointPool::new(index, url.clone(), endpoint.clone(), settings, Vec::new())
            })
            .collect();
        Ok(QdrantService::new(pools, prepared))
    }

    /// Builds the service and opens every connection first, failing with a
    /// [`ErrorKind::Connect`] error naming the endpoint if one cannot be reached within the
    /// connect timeout.
    pub async fn connect(self) -> Result<QdrantService, VectorError> {
        let prepared = self.prepare().map_err(|error| {
            VectorError::new(ErrorKind::InvalidRequest, "connect", error.to_string())
                .with_source(error)
                .with_maybe_sent(false)
        })?;
        let settings = prepared.template.settings;
        let mut pools = Vec::with_capacity(prepared.endpoints.len());
        for (index, (url, endpoint)) in prepared.endpoints.iter().enumerate() {
            let mut channels = Vec::with_capacity(settings.max);
            for _ in 0..settings.min {
                let channel = endpoint.connect().await.map_err(|error| {
                    let message = format!("cannot connect to {}: {error}", endpoint.uri());
                    VectorError::new(ErrorKind::Connect, "connect", message)
                        .with_source(error)
                        .with_maybe_sent(false)
                })?;
                channels.push(channel);
            }
            pools.push(EndpointPool::new(
                index,
                url.clone(),
                endpoint.clone(),
                settings,
                channels,
            ));
        }
        Ok(QdrantService::new(pools, prepared))
    }

    fn prepare(self) -> Result<Prepared, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoint",
                "at least one endpoint is required",
            ));
        }
        let (min, max) = self.connections;
        if min == 0 {
            return Err(ConfigError::new(
                "connections",
                "the minimum must be at least 1",
            ));
        }
        if max < min {
            return Err(ConfigError::new(
                "connections",
                format!("the maximum ({max}) must be at least the minimum ({min})"),
            ));
        }
        if self.grow_at == 0 {
            return Err(ConfigError::new("grow_at", "must be at least 1 call"));
        }
        self.outlier
            .validate()
            .map_err(|reason| ConfigError::new("outlier_detection", reason))?;
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be greater than zero",
            ));
        }
        if let Some(discovery) = &self.discovery {
            discovery.validate(self.endpoints.len())?;
        }
        let template = EndpointTemplate {
            settings: PoolSettings {
                min,
                max,
                grow_at: self.grow_at,
                idle: self.idle_timeout,
            },
            connect_timeout: self.connect_timeout,
            keep_alive_interval: self.keep_alive_interval,
            keep_alive_timeout: self.keep_alive_timeout,
            tls: self.tls,
        };
        let endpoints = self
            .endpoints
            .iter()
            .map(|url| Ok((url.clone(), template.endpoint(url)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let discovery = match self.discovery {
            Some(discovery) => Some(crate::discovery::State::new(
                discovery,
                self.api_key.as_deref(),
            )?),
            None => None,
        };
        let api_key = match self.api_key {
            Some(key) => {
                let mut value = AsciiMetadataValue::try_from(key).map_err(|_| {
                    // The value itself is a secret: say what is wrong, not what it is.
                    ConfigError::new("api_key", "must be visible ASCII")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new("header", format!("`{name}` is not a valid header name"))
            })?;
            let value = AsciiMetadataValue::try_from(value).map_err(|_| {
                ConfigError::new(
                    "header",
                    format!("the value of `{name}` must be visible ASCII"),
                )
            })?;
            headers.push((key, value));
        }
        let options = CallOptions {
            api_key,
            headers,
            timeout: self.request_timeout,
            compression: self.compression,
            max_message_size: self.max_message_size,
        };
        let limits = Limits {
            max_bytes: self.limits.max_bytes.min(self.max_message_size),
            ..self.limits
        };
        Ok(Prepared {
            endpoints,
            template,
            options,
            limits,
            router: Router::new(self.balance, self.outlier),
            discovery,
        })
    }
}

/// A builder's settings, checked and ready.
struct Prepared {
    endpoints: Vec<(String, Endpoint)>,
    template: EndpointTemplate,
    options: CallOptions,
    limits: Limits,
    router: Router,
    discovery: Option<crate::discovery::State>,
}

/// What every endpoint shares: how to connect and how its connections grow.
pub(crate) struct EndpointTemplate {
    pub(crate) settings: PoolSettings,
    connect_timeout: Duration,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
    tls: Option<ClientTlsConfig>,
}

impl EndpointTemplate {
    /// The tonic endpoint for `url`, with these settings.
    pub(crate) fn endpoint(&self, url: &str) -> Result<Endpoint, ConfigError> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|error| {
                ConfigError::new("endpoint", format!("`{url}` is not a valid URL: {error}"))
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .keep_alive_timeout(self.keep_alive_timeout)
            .keep_alive_while_idle(self.keep_alive_interval.is_some());
        if let Some(interval) = self.keep_alive_interval {
            endpoint = endpoint.http2_keep_alive_interval(interval);
        }
        let tls = match (&self.tls, endpoint.uri().scheme_str()) {
            (Some(tls), _) => Some(tls.clone()),
            (None, Some("https")) => Some(ClientTlsConfig::new().with_native_roots()),
            (None, _) => None,
        };
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| ConfigError::new("tls", error.to_string()))?;
        }
        Ok(endpoint)
    }
}

impl QdrantService {
    fn new(pools: Vec<Arc<EndpointPool>>, prepared: Prepared) -> Self {
        let capacity = prepared
            .discovery
            .as_ref()
            .map_or(pools.len(), |d| d.settings.max_endpoints);
        let endpoints = Arc::new(EndpointSet::new(pools, capacity));
        crate::pool::spawn_reaper(Arc::downgrade(&endpoints), prepared.template.settings);
        let discovering = prepared.discovery.is_some();
        let shared = Arc::new(Shared {
            endpoints,
            router: prepared.router,
            options: prepared.options,
            limits: prepared.limits,
            template: prepared.template,
            discovery: prepared.discovery,
        });
        if shared.endpoints.capacity() > 1 {
            spawn_sweeper(Arc::downgrade(&shared));
        }
        if discovering {
            crate::discovery::spawn(Arc::downgrade(&shared));
        }
        QdrantService {
            shared,
            ready: None,
        }
    }
}

/// Ends each outlier-detection interval (success-rate outliers, decay) while the service
/// lives.
fn spawn_sweeper(shared: std::sync::Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            let Some(interval) = shared.upgrade().map(|s| s.router.outlier.interval) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.router.sweep(&shared.endpoints, Instant::now());
        }
    });
}

/// A builder setting that cannot work, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid QdrantService setting `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The setting that is wrong.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VectorOp;
    use tonic::Status;

    fn cancelled(message: &str) -> VectorError {
        VectorError::from_status(Status::cancelled(message), "search", Some("docs"))
    }

    /// Each operation's call future is boxed at its own size. One future for all operations
    /// was as large as the largest (12.6 KiB in a debug build); allocating and freeing that
    /// per call made glibc trim and regrow its heap (~30 µs of page faults per search,
    /// BENCHMARKS.md section 2). Now a search's is its own (5.3 KiB in a debug build), smaller
    /// than the largest operation's (9.8 KiB).
    #[tokio::test]
    async fn each_operations_call_future_has_its_own_size() {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let options = CallOptions {
            api_key: None,
            headers: Vec::new(),
            timeout: None,
            compression: false,
            max_message_size: 4 << 20,
        };
        let sizes: Vec<(&str, usize)> = VectorOp::samples()
            .into_iter()
            .map(|op| {
                let name = op.operation();
                let shared = VectorRequest::new(op).into_shared();
                let limit = Some(Duration::from_secs(1));
                let call = dispatch(channel.clone(), &options, shared, limit, limit);
                (name, std::mem::size_of_val(&*call))
            })
            .collect();
        let largest = sizes.iter().map(|&(_, size)| size).max().unwrap();
        let search = sizes.iter().find(|&&(name, _)| name == "search").unwrap().1;
        assert!(
            search < largest,
            "one size for all operations again: {sizes:?}"
        );
    }

    #[test]
    fn a_cancelled_answer_at_the_calls_limit_is_a_timeout() {
        let start = Instant::now();
        let ends = Some(start + Duration::from_millis(100));
        // The server's answer came in at (or, rounding, just before) the limit.
        for at in [100, 99, 150] {
            let error = at_the_limit(
                cancelled("operation was cancelled"),
                ends,
                start + Duration::from_millis(at),
            );
            assert_eq!(error.kind(), ErrorKind::Timeout, "at {at} ms");
            assert!(error.maybe_sent());
        }
    }

    #[test]
    fn a_cancelled_answer_well_before_the_limit_or_without_one_stays_cancelled() {
        let start = Instant::now();
        let early = at_the_limit(
            cancelled("operation was cancelled"),
            Some(start + Duration::from_millis(100)),
            start + Duration::from_millis(50),
        );
        assert_eq!(early.kind(), ErrorKind::Cancelled);
        let unbounded = at_the_limit(cancelled("operation was cancelled"), None, start);
        assert_eq!(unbounded.kind(), ErrorKind::Cancelled);
        // Other kinds are never touched.
        let unavailable = at_the_limit(
            VectorError::from_status(Status::unavailable("down"), "search", None),
            Some(start),
            start,
        );
        assert_eq!(unavailable.kind(), ErrorKind::Unavailable);
    }
}
