//! Endpoint discovery: a Qdrant cluster's peers, read from the cluster itself.
//!
//! Qdrant lists its peers only in its REST API (`GET /cluster`), and by their peer-to-peer
//! address (Qdrant's `p2p` port, 6335 by default), not their gRPC one. Discovery therefore
//! asks an endpoint's REST port — its gRPC port plus
//! [`rest_port_offset`](Discovery::with_ports) (−1 by default: 6334 → 6333) — and derives
//! each peer's gRPC URL from its p2p address — that port plus
//! [`grpc_port_offset`](Discovery::with_ports) (−1 by default: 6335 → 6334), with the scheme
//! of the endpoint that answered. The `api-key` is sent with the request.
//!
//! Every [`interval`](Discovery::with_interval) (and on
//! [`QdrantService::discover`](crate::QdrantService::discover)) the service:
//! - asks every endpoint in rotation for the peers (each also tells its own peer id), and
//!   follows the most up-to-date answer (the highest Raft term and commit index, the
//!   leader's on a tie: a node cut off from the cluster may list a stale membership);
//! - adds a peer it has no endpoint for (up to [`max_endpoints`](Discovery::with_max_endpoints));
//! - *retires* an endpoint whose peer left the cluster (or that duplicates another endpoint
//!   for the same peer): it gets no new calls, calls on it finish; it comes back if the peer
//!   is listed again.
//!
//! It never retires the last endpoint in rotation; a round that fails (no endpoint answers,
//! or only a node removed from the cluster, whose consensus has stopped) changes nothing, and
//! a single node (clustering disabled) has nothing to discover. A peer that is down
//! stays a member: outlier detection keeps it out of rotation until it answers again.
//! [`QdrantService::pool_stats`](crate::QdrantService::pool_stats) shows each endpoint's
//! peer id and whether it is retired.
//!
//! Seeds should name nodes, not a load balancer: an endpoint that answers with a different peer
//! id each time is one endpoint for several peers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use qdrant_tower_layers::ErrorKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::error::VectorError;
use crate::pool::EndpointPool;
use crate::service::{ConfigError, Shared};

/// The operation name discovery's errors carry.
const OPERATION: &str = "discover";
/// The most a `/cluster` answer may weigh: a few hundred bytes per peer.
const MAX_ANSWER: usize = 1 << 20;

/// Endpoint discovery settings; see the [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_client::discovery::Discovery;
///
/// // Qdrant's default ports: gRPC 6334, REST 6333, p2p 6335.
/// let default = Discovery::new();
/// // Nodes whose gRPC port is P, REST P + 1 and p2p P + 2:
/// let shifted = Discovery::new()
///     .with_ports(1, -2)
///     .with_interval(Duration::from_secs(10))
///     .with_max_endpoints(8);
/// # let _ = (default, shifted);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Discovery {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) rest_port_offset: i32,
    pub(crate) grpc_port_offset: i32,
    pub(crate) max_endpoints: usize,
    pub(crate) root_certificates: Vec<Vec<u8>>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            rest_port_offset: -1,
            grpc_port_offset: -1,
            max_endpoints: 16,
            root_certificates: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rest_port_offset", &self.rest_port_offset)
            .field("grpc_port_offset", &self.grpc_port_offset)
            .field("max_endpoints", &self.max_endpoints)
            .field("root_certificates", &self.root_certificates.len())
            .finish()
    }
}

impl Discovery {
    /// Discovery every 30 s, each request bounded by 5 s, Qdrant's default ports, at most 16
    /// endpoints.
    pub fn new() -> Self {
        Discovery::default()
    }

    /// How often to read the peers. Default 30 s.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The longest one request for the peers may take (connection included). Default 5 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where the ports are: an endpoint's REST port is its gRPC port plus `rest_offset`, a
    /// peer's gRPC port its p2p port plus `grpc_offset`. Default −1 and −1 (Qdrant's 6333,
    /// 6334, 6335).
    pub fn with_ports(mut self, rest_offset: i32, grpc_offset: i32) -> Self {
        self.rest_port_offset = rest_offset;
        self.grpc_port_offset = grpc_offset;
        self
    }

    /// The most endpoints the service holds, seeds included (at most 64). Default 16.
    pub fn with_max_endpoints(mut self, endpoints: usize) -> Self {
        self.max_endpoints = endpoints;
        self
    }

    /// A CA certificate (PEM) trusted for `https` REST requests, besides the system's roots.
    pub fn with_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// How often the peers are read.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest one request for the peers may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The port offsets: (REST from gRPC, gRPC from p2p).
    pub fn ports(&self) -> (i32, i32) {
        (self.rest_port_offset, self.grpc_port_offset)
    }

    /// The most endpoints the service holds.
    pub fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    pub(crate) fn validate(&self, seeds: usize) -> Result<(), ConfigError> {
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err(ConfigError::new(
                "discovery",
                "interval and timeout must be greater than zero",
            ));
        }
        if !(seeds..=64).contains(&self.max_endpoints) {
            return Err(ConfigError::new(
                "discovery",
                format!(
                    "max_endpoints must be within the {seeds} configured endpoints and 64, \
                     not {}",
                    self.max_endpoints
                ),
            ));
        }
        Ok(())
    }
}

/// What one discovery round found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryReport {
    /// The endpoint that listed the peers.
    pub asked: String,
    /// The cluster's peers (ids), in no order.
    pub peers: Vec<u64>,
    /// Endpoints added (gRPC URLs).
    pub added: Vec<String>,
    /// Endpoints retired: their peer left the cluster, or another endpoint stands for it.
    pub retired: Vec<String>,
    /// Retired endpoints back in rotation: their peer is listed again.
    pub returned: Vec<String>,
    /// Peers not added because the service holds `max_endpoints` already.
    pub skipped: Vec<String>,
}

/// Discovery's settings made ready: the TLS connector and the API key header.
pub(crate) struct State {
    pub(crate) settings: Discovery,
    tls: TlsConnector,
    api_key: Option<HeaderValue>,
    /// One round at a time (the periodic task and `discover` calls).
    round: tokio::sync::Mutex<()>,
}

impl State {
    pub(crate) fn new(settings: Discovery, api_key: Option<&str>) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        // The system's roots; an unreadable one is skipped (tonic does the same).
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for pem in &settings.root_certificates {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|error| {
                    ConfigError::new("discovery", format!("a root certificate: {error}"))
                })?;
                roots.add(cert).map_err(|error| {
                    ConfigError::new("discovery", format!("a root certificate: {error}"))
                })?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ConfigError::new("discovery", error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let api_key = match api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(key)
                    .map_err(|_| ConfigError::new("api_key", "must be visible ASCII"))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(State {
            settings,
            tls: TlsConnector::from(Arc::new(config)),
            api_key,
            round: tokio::sync::Mutex::new(()),
        })
    }
}

/// What `GET /cluster` says.
struct ClusterInfo {
    /// The answering node's peer id.
    peer_id: u64,
    /// How up to date its view is: its Raft term and commit index, then whether it is the
    /// leader and a voter (a follower can match the leader's commit, never pass it).
    raft: (u64, u64, bool, bool),
    /// Each peer's id and p2p URI.
    peers: Vec<(u64, String)>,
    /// Why its list cannot be trusted (its consensus thread stopped), if so: its own peer id
    /// still counts.
    untrusted: Option<String>,
}

/// Reads the peers every interval while the service lives (the first round at once).
pub(crate) fn spawn(shared: std::sync::Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            let interval = {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let Some(state) = &shared.discovery else {
                    return;
                };
                if let Err(error) = round(&shared, state).await {
                    tracing::warn!(%error, "endpoint discovery failed; the endpoints stay as they are");
                }
                state.settings.interval
            };
            tokio::time::sleep(interval).await;
        }
    });
}

/// One discovery round; see the module documentation.
pub(crate) async fn round(shared: &Shared, state: &State) -> Result<DiscoveryReport, VectorError> {
    let _one = state.round.lock().await;
    let set = &shared.endpoints;
    // Ask every endpoint in rotation (and any whose peer id is unknown) at once: each tells
    // its own peer id, and the most up-to-date view of the membership (the highest Raft
    // term and commit, the leader's on a tie) decides — a node cut off from the cluster, or
    // just removed from it, can answer a stale list.
    let asked: Vec<&Arc<EndpointPool>> = set
        .iter()
        .filter(|pool| !pool.health.is_retired() || pool.health.peer_id().is_none())
        .collect();
    let answers = futures_util::future::join_all(
        asked
            .iter()
            .map(|pool| async move { fetch(state, pool.url()).await }),
    )
    .await;
    let mut best: Option<(&Arc<EndpointPool>, ClusterInfo)> = None;
    let mut single = None;
    let mut last_error = None;
    for (pool, answer) in asked.iter().zip(answers) {
        match answer {
            Ok(Some(info)) => {
                pool.health.set_peer_id(info.peer_id);
                if let Some(why) = info.untrusted {
                    last_error = Some(VectorError::new(
                        ErrorKind::Unavailable,
                        OPERATION,
                        format!("{} cannot list the peers: {why}", pool.url()),
                    ));
                    continue;
                }
                let newer = best
                    .as_ref()
                    .is_none_or(|(_, known)| info.raft > known.raft);
                if newer && !pool.health.is_retired() {
                    best = Some((pool, info));
                }
            }
            Ok(None) => single = Some(pool),
            Err(error) => last_error = Some(error),
        }
    }
    match (best, single) {
        (Some((asked, info)), _) => Ok(apply(shared, state, asked.url(), &info)),
        (None, Some(pool)) => {
            // A single node: nothing to discover, nothing to change.
            tracing::debug!(
                endpoint = pool.url(),
                "endpoint discovery: clustering is disabled"
            );
            Ok(DiscoveryReport {
                asked: pool.url().to_owned(),
                ..DiscoveryReport::default()
            })
        }
        (None, None) => Err(last_error.unwrap_or_else(|| {
            VectorError::new(ErrorKind::Unavailable, OPERATION, "no endpoint to ask")
        })),
    }
}

/// Brings the endpoints in line with the peers `info` lists.
fn apply(shared: &Shared, state: &State, asked: &str, info: &ClusterInfo) -> DiscoveryReport {
    let set = &shared.endpoints;
    let mut report = DiscoveryReport {
        asked: asked.to_owned(),
        peers: info.peers.iter().map(|(id, _)| *id).collect(),
        ..DiscoveryReport::default()
    };
    let members: HashSet<u64> = info.peers.iter().map(|(id, _)| *id).collect();
    // Which endpoints stay: the first live endpoint for each member peer, every endpoint
    // whose peer is unknown; the others are retired.
    let mut keep: HashMap<u64, usize> = HashMap::new();
    let mut retire = Vec::new();
    let mut revive = Vec::new();
    for pool in set.iter() {
        match pool.health.peer_id() {
            None => {}
            Some(id) if !members.contains(&id) => retire.push(pool),
            Some(id) => {
                let first = *keep.entry(id).or_insert(pool.index);
                if first == pool.index {
                    revive.push(pool);
                } else {
                    retire.push(pool);
                }
            }
        }
    }
    let live_after = set
        .iter()
        .filter(|pool| {
            if retire.iter().any(|r| r.index == pool.index) {
                false
            } else {
                revive.iter().any(|r| r.index == pool.index) || !pool.health.is_retired()
            }
        })
        .count();
    if live_after == 0 {
        tracing::warn!(
            asked,
            "endpoint discovery would retire every endpoint; keeping them"
        );
        retire.clear();
    }
    for pool in retire {
        if !pool.health.is_retired() {
            pool.health.set_retired(true);
            tracing::info!(endpoint = pool.url(), peer_id = ?pool.health.peer_id(), "endpoint retired: its peer left the cluster");
            report.retired.push(pool.url().to_owned());
        }
    }
    for pool in revive {
        if pool.health.is_retired() {
            pool.health.set_retired(false);
            tracing::info!(
                endpoint = pool.url(),
                "endpoint back: its peer is listed again"
            );
            report.returned.push(pool.url().to_owned());
        }
    }
    // Peers without an endpoint: one with their URL (never answered yet) or a new one.
    let scheme = asked
        .parse::<Uri>()
        .ok()
        .and_then(|uri| uri.scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    for (id, p2p) in &info.peers {
        if keep.contains_key(id) {
            continue;
        }
        let Some(url) = grpc_url(&scheme, p2p, state.settings.grpc_port_offset) else {
            tracing::warn!(
                peer_id = id,
                uri = p2p,
                "a peer's address cannot be read; skipped"
            );
            continue;
        };
        if let Some(pool) = set.iter().find(|pool| same_url(pool.url(), &url)) {
            pool.health.set_peer_id(*id);
            if pool.health.is_retired() {
                pool.health.set_retired(false);
                report.returned.push(pool.url().to_owned());
            }
            continue;
        }
        if set.len() >= state.settings.max_endpoints.min(set.capacity()) {
            tracing::warn!(
                endpoint = url,
                max = state.settings.max_endpoints,
                "a discovered peer is not added: the service holds max_endpoints"
            );
            report.skipped.push(url);
            continue;
        }
        let endpoint = match shared.template.endpoint(&url) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                tracing::warn!(endpoint = url, %error, "a discovered peer's URL is not usable");
                continue;
            }
        };
        let settings = shared.template.settings;
        let added =
            set.push(|index| EndpointPool::new(index, url.clone(), endpoint, settings, Vec::new()));
        if let Some(pool) = added {
            pool.health.set_peer_id(*id);
            tracing::info!(endpoint = url, peer_id = id, "endpoint discovered");
            report.added.push(url);
        }
    }
    report
}

/// The gRPC URL of a peer whose p2p URI is `p2p`.
fn grpc_url(scheme: &str, p2p: &str, offset: i32) -> Option<String> {
    let uri: Uri = p2p.parse().ok()?;
    let host = uri.host()?;
    let port = i64::from(uri.port_u16()?) + i64::from(offset);
    let port = u16::try_from(port).ok().filter(|&port| port != 0)?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Some(format!("{scheme}://{host}:{port}"))
}

/// Whether two endpoint URLs name the same place (ignoring a trailing slash and case).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// `GET /cluster` on the REST port of the endpoint at `url`.
async fn fetch(state: &State, url: &str) -> Result<Option<ClusterInfo>, VectorError> {
    let failed = |kind: ErrorKind, message: String| {
        VectorError::new(kind, OPERATION, message).with_maybe_sent(false)
    };
    let uri: Uri = url
        .parse()
        .map_err(|_| failed(ErrorKind::InvalidRequest, format!("`{url}` is not a URL")))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| failed(ErrorKind::InvalidRequest, format!("`{url}` has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let grpc_port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let port = u16::try_from(i64::from(grpc_port) + i64::from(state.settings.rest_port_offset))
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| {
            failed(
                ErrorKind::InvalidRequest,
                format!(
                    "the REST port of `{url}` ({grpc_port} {:+}) is not a port",
                    state.settings.rest_port_offset
                ),
            )
        })?;
    let rest = format!(
        "{}://{}:{port}/cluster",
        if tls { "https" } else { "http" },
        uri.host().unwrap_or_default()
    );
    let timeout = state.settings.timeout;
    let body = tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| {
                failed(
                    ErrorKind::Connect,
                    format!("cannot connect to {rest}: {error}"),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        if tls {
            let name = ServerName::try_from(host.clone()).map_err(|error| {
                failed(
                    ErrorKind::InvalidRequest,
                    format!("`{host}` is not a TLS server name: {error}"),
                )
            })?;
            let stream =
                state.tls.connect(name, tcp).await.map_err(|error| {
                    failed(ErrorKind::Connect, format!("TLS with {rest}: {error}"))
                })?;
            get(state, stream, &rest).await
        } else {
            get(state, tcp, &rest).await
        }
    })
    .await
    .map_err(|_| {
        failed(
            ErrorKind::Timeout,
            format!("no answer from {rest} within {timeout:?}"),
        )
    })??;
    parse(&body).map_err(|why| {
        VectorError::new(
            ErrorKind::Internal,
            OPERATION,
            format!("{rest} answered what is not Qdrant's cluster info: {why}"),
        )
    })
}

/// One HTTP/1.1 GET over `io`, returning the body of a 200 answer.
async fn get<T>(state: &State, io: T, url: &str) -> Result<Bytes, VectorError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |error: hyper::Error| {
        VectorError::new(
            ErrorKind::Unavailable,
            OPERATION,
            format!("GET {url}: {error}"),
        )
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(transport)?;
    // The connection is driven until the answer is read, then dropped with this task's
    // future (one request per connection).
    let driver = tokio::spawn(connection);
    let uri: Uri = url
        .parse()
        .map_err(|_| VectorError::new(ErrorKind::InvalidRequest, OPERATION, format!("`{url}`")))?;
    let mut request = Request::get(uri.path())
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .header(http::header::ACCEPT, "application/json");
    if let Some(key) = &state.api_key {
        request = request.header("api-key", key.clone());
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|error| {
        VectorError::new(ErrorKind::InvalidRequest, OPERATION, error.to_string())
    })?;
    let result = async {
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        if status != StatusCode::OK {
            let kind = match status {
                StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
                StatusCode::FORBIDDEN => ErrorKind::PermissionDenied,
                StatusCode::NOT_FOUND => ErrorKind::NotFound,
                StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
                status if status.is_server_error() => ErrorKind::Unavailable,
                _ => ErrorKind::InvalidRequest,
            };
            return Err(VectorError::new(
                kind,
                OPERATION,
                format!("GET {url} answered {status}"),
            ));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|error| {
                VectorError::new(
                    ErrorKind::Unavailable,
                    OPERATION,
                    format!("reading the answer of GET {url}: {error}"),
                )
            })?;
        Ok(body.to_bytes())
    }
    .await;
    driver.abort();
    result
}

/// Reads `/cluster`'s answer: `{"result": {"status": "enabled", "peer_id": N, "peers":
/// {"N": {"uri": "..."}}, "consensus_thread_status": {"consensus_thread_status":
/// "working"}}}`; `None` for a single node (clustering disabled).
///
/// A node whose consensus thread is not working (one removed from the cluster, say, which
/// then lists only itself) does not know the membership: its answer is refused.
fn parse(body: &[u8]) -> Result<Option<ClusterInfo>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("not JSON: {error}"))?;
    let result = value.get("result").ok_or("no `result`")?;
    match result.get("status").and_then(|s| s.as_str()) {
        Some("enabled") => {}
        Some("disabled") => return Ok(None),
        other => return Err(format!("cluster status {}", other.unwrap_or("missing"))),
    }
    let consensus = result
        .pointer("/consensus_thread_status/consensus_thread_status")
        .and_then(serde_json::Value::as_str);
    let untrusted = consensus
        .filter(|&status| status != "working")
        .map(|status| {
            format!("its consensus thread is {status}: it does not know the cluster's members")
        });
    let peer_id = result
        .get("peer_id")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no `peer_id`")?;
    let peers = result
        .get("peers")
        .and_then(serde_json::Value::as_object)
        .ok_or("no `peers`")?
        .iter()
        .filter_map(|(id, peer)| {
            let id = id.parse::<u64>().ok()?;
            let uri = peer.get("uri")?.as_str()?;
            Some((id, uri.to_owned()))
        })
        .collect::<Vec<_>>();
    if peers.is_empty() {
        return Err("no peers listed".into());
    }
    let raft = |key: &str| result.pointer(&format!("/raft_info/{key}"));
    let number = |key: &str| raft(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let leader = raft("leader").and_then(serde_json::Value::as_u64) == Some(peer_id);
    let voter = raft("is_voter").and_then(serde_json::Value::as_bool) == Some(true);
    Ok(Some(ClusterInfo {
        peer_id,
        raft: (number("term"), number("commit"), leader, voter),
        peers,
        untrusted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_grpc_url_is_its_p2p_address_shifted() {
        assert_eq!(
            grpc_url("http", "http://10.0.0.7:6335/", -1).as_deref(),
            Some("http://10.0.0.7:6334")
        );
        assert_eq!(
            grpc_url("https", "http://node-2.qdrant:16337/", -2).as_deref(),
            Some("https://node-2.qdrant:16335")
        );
        assert_eq!(
            grpc_url("http", "http://[::1]:6335", -1).as_deref(),
            Some("http://[::1]:6334")
        );
        assert_eq!(grpc_url("http", "http://10.0.0.7/", -1), None, "no port");
        assert_eq!(grpc_url("http", "http://10.0.0.7:1", -1), None, "port 0");
        assert_eq!(grpc_url("http", "not a uri", -1), None);
    }

    #[test]
    fn the_cluster_answer_is_read_and_a_single_node_refused() {
        let answer = br#"{"result":{"status":"enabled","peer_id":5549458173687897,
            "peers":{"5549458173687897":{"uri":"http://127.0.0.1:17336/"},
                     "4297218800594511":{"uri":"http://127.0.0.1:17346/"}},
            "raft_info":{"term":1}},"status":"ok","time":0.1}"#;
        let info = parse(answer).unwrap().unwrap();
        assert_eq!(info.peer_id, 5549458173687897);
        assert_eq!(
            info.raft,
            (1, 0, false, false),
            "the term read, the rest missing"
        );
        assert_eq!(info.peers.len(), 2);
        let single = br#"{"result":{"status":"disabled"},"status":"ok","time":0.1}"#;
        assert!(parse(single).unwrap().is_none());
        let removed = br#"{"result":{"status":"enabled","peer_id":1,
            "peers":{"1":{"uri":"http://127.0.0.1:17356/"}},
            "consensus_thread_status":{"consensus_thread_status":"stopped"}}}"#;
        let removed = parse(removed).unwrap().unwrap();
        assert_eq!(removed.peer_id, 1, "its own id still counts");
        assert!(removed.untrusted.unwrap().contains("stopped"));
        assert!(parse(b"<html>").is_err());
        assert!(parse(br#"{"result":{"status":"enabled","peer_id":1,"peers":{}}}"#).is_err());
    }

    fn peers(ids: &[u64]) -> ClusterInfo {
        // Peer n's p2p port is 10n + 2, so its gRPC port (offset −2) is 10n.
        ClusterInfo {
            peer_id: ids[0],
            raft: (1, 1, true, true),
            untrusted: None,
            peers: ids
                .iter()
                .map(|&id| (id, format!("http://127.0.0.1:{}/", 10 * id + 2)))
                .collect(),
        }
    }

    #[tokio::test]
    async fn the_endpoints_follow_the_peer_list() {
        let service = crate::QdrantService::builder()
            .endpoint("http://127.0.0.1:10")
            .endpoint("http://localhost:20")
            .discovery(Discovery::new().with_ports(1, -2).with_max_endpoints(4))
            .build()
            .unwrap();
        let shared = &service.shared;
        let state = shared.discovery.as_ref().unwrap();
        let set = &shared.endpoints;
        set.get(0).health.set_peer_id(1);
        set.get(1).health.set_peer_id(2);
        // Peer 2's advertised URL differs from its seed's (localhost): known by its id, it is
        // not added twice; peer 3 is new.
        let report = apply(shared, state, "http://127.0.0.1:10", &peers(&[1, 2, 3]));
        assert_eq!(report.added, ["http://127.0.0.1:30"]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.get(2).health.peer_id(), Some(3));
        // Peer 3 leaves: retired, not removed (indices stay).
        let report = apply(shared, state, "http://127.0.0.1:10", &peers(&[1, 2]));
        assert_eq!(report.retired, ["http://127.0.0.1:30"]);
        assert!(set.get(2).health.is_retired());
        for _ in 0..10 {
            assert_ne!(
                shared.router.pick(set, 0, true),
                2,
                "a retired endpoint is picked"
            );
        }
        // Listed again: back, not added again.
        let report = apply(shared, state, "http://127.0.0.1:10", &peers(&[1, 2, 3]));
        assert_eq!(report.returned, ["http://127.0.0.1:30"]);
        assert!(report.added.is_empty() && !set.get(2).health.is_retired());
        // Room for one more only.
        let report = apply(
            shared,
            state,
            "http://127.0.0.1:10",
            &peers(&[1, 2, 3, 4, 5]),
        );
        assert_eq!(report.added, ["http://127.0.0.1:40"]);
        assert_eq!(report.skipped, ["http://127.0.0.1:50"]);
        // A list without any of the known peers would retire them all: nothing is retired
        // (peer 6 cannot be added either: no room).
        let report = apply(shared, state, "http://127.0.0.1:10", &peers(&[6]));
        assert!(report.retired.is_empty(), "{report:?}");
        assert!((0..set.len()).all(|i| !set.get(i).health.is_retired()));
        // Two endpoints answering as one peer: the later one is retired.
        set.get(3).health.set_peer_id(1);
        let report = apply(shared, state, "http://127.0.0.1:10", &peers(&[1, 2, 3]));
        assert_eq!(report.retired, ["http://127.0.0.1:40"]);
        let stats = service.pool_stats();
        assert_eq!(stats.len(), 4);
        assert!(stats[3].retired && !stats[0].retired);
        assert_eq!(stats[2].peer_id, Some(3));
    }

    #[tokio::test]
    async fn a_round_with_no_endpoint_answering_fails_and_changes_nothing() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let service = crate::QdrantService::builder()
            .endpoint(format!("http://127.0.0.1:{}", port + 1))
            .discovery(Discovery::new().with_ports(-1, -1))
            .build()
            .unwrap();
        let error = service.discover().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.to_string().contains("/cluster"), "{error}");
        assert_eq!(service.pool_stats().len(), 1);
        let plain = crate::QdrantService::from_url("http://127.0.0.1:1").unwrap();
        let error = plain.discover().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Discovery::new().validate(1).is_ok());
        assert!(Discovery::new().with_max_endpoints(65).validate(1).is_err());
        assert!(Discovery::new().with_max_endpoints(2).validate(3).is_err());
        assert!(
            Discovery::new()
                .with_interval(Duration::ZERO)
                .validate(1)
                .is_err()
        );
    }
}
