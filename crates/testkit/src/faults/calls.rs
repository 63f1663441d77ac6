//! [`CallLog`] and its entries, [`Call`]: which calls reached the server, when, on which
//! connection, with what request.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use super::plan::parse_grpc_timeout;
use super::rpc::Rpc;

/// What a [`TestServer`](crate::TestServer) saw: every call that reached it, in arrival order,
/// as [`Call`] entries: the RPC and collection, the time it arrived (tokio's clock, so a test on
/// a paused clock reads paused-clock instants), the connection it came on, a per-request id,
/// the decoded request and its metadata, and whether a fault was injected into it or the API
/// key check refused it.
///
/// Use it to assert what the backend saw: "exactly 3 attempts", "no retry sooner than
/// `retry-after`", "no call while the breaker was open", "the retry went out on a new
/// connection", "the second attempt carried the same points". Every call is recorded, faulted,
/// refused by the [API key](crate::TestServerBuilder::api_key) check or served; calls refused
/// before the server's handlers (a connection the proxy broke, a message tonic could not
/// decode) are not. RPCs without a collection (health check, list collections) are counted
/// under the empty name `""`. Health probes ([`Rpc::HealthCheck`]) are recorded like any call;
/// [`Call::is_health_probe`] and [`total_excluding_health_probes`](Self::total_excluding_health_probes)
/// leave them out.
///
/// It is a handle: clones share one log, and it keeps filling across
/// [restarts](crate::TestServer::restart). Each entry holds a copy of the decoded request, so a
/// server that takes millions of calls should be started with
/// [`record_calls(false)`](crate::TestServerBuilder::record_calls), or the log
/// [`reset`](Self::reset) now and then.
///
/// ```
/// use qdrant_client::qdrant::HealthCheckRequest;
/// use qdrant_client::qdrant::qdrant_client::QdrantClient;
/// use qdrant_tower_testkit::TestServer;
/// use qdrant_tower_testkit::faults::Rpc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::start().await?;
/// let mut client = QdrantClient::connect(server.url()).await?;
/// client.health_check(HealthCheckRequest {}).await?;
/// client.health_check(HealthCheckRequest {}).await?;
///
/// let calls = server.calls();
/// assert_eq!(calls.count(Rpc::HealthCheck, ""), 2);
/// assert_eq!(calls.total(), 2);
/// assert_eq!(calls.total_excluding_health_probes(), 0);
///
/// let entries = calls.entries();
/// assert!(entries.iter().all(|call| call.is_health_probe()));
/// assert!(entries[0].id() < entries[1].id(), "request ids follow the arrival order");
/// assert_eq!(entries[0].connection_id(), entries[1].connection_id(), "one channel, one connection");
/// assert!(entries[0].at() <= entries[1].at());
/// calls.reset();
/// assert_eq!(calls.total(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct CallLog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<Vec<Call>>,
    /// The id of the last call, recorded or not; never reset, so ids stay unique.
    last_id: AtomicU64,
}

/// One call in a [`CallLog`]. Cheap to clone (it is shared).
///
/// It exposes what a [`FaultRule::when`](super::FaultRule::when) predicate sees of the call
/// (the RPC, the collection, the decoded request, the caller's address and metadata), plus
/// where it came from ([`connection_id`](Self::connection_id)), its place in the arrival order
/// ([`id`](Self::id)) and what happened to it ([`is_faulted`](Self::is_faulted),
/// [`is_denied`](Self::is_denied)).
///
/// Its `Debug` output shows the RPC, collection, ids and outcome, never the metadata (which
/// may hold the client's API key) nor the request.
#[derive(Clone)]
pub struct Call {
    inner: Arc<CallInner>,
}

struct CallInner {
    id: u64,
    connection_id: u64,
    rpc: Rpc,
    collection: Option<String>,
    at: Instant,
    faulted: bool,
    denied: bool,
    remote_addr: Option<SocketAddr>,
    metadata: MetadataMap,
    message: Arc<dyn Any + Send + Sync>,
}

/// What the server knows of a call when it records it.
pub(crate) struct CallRecord<'a> {
    pub(crate) id: u64,
    pub(crate) connection_id: u64,
    pub(crate) rpc: Rpc,
    pub(crate) collection: Option<&'a str>,
    pub(crate) faulted: bool,
    pub(crate) denied: bool,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) metadata: &'a MetadataMap,
    pub(crate) message: Arc<dyn Any + Send + Sync>,
}

impl Call {
    /// The call's request id: 1, 2, 3… in the order calls reached the server, unique for the
    /// server's lifetime (across restarts, and after [`CallLog::reset`]).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The id of the TCP connection the call came on: 1, 2, 3… in the order the server accepted
    /// them, unique for the server's lifetime. Calls with the same id shared a connection (an
    /// HTTP/2 connection carries many calls); a client that reconnected after a dropped
    /// connection or a restart shows a new id. Through a [`ChaosProxy`](crate::ChaosProxy) it
    /// names the proxy's connection to the server.
    pub fn connection_id(&self) -> u64 {
        self.inner.connection_id
    }

    /// The RPC called.
    pub fn rpc(&self) -> Rpc {
        self.inner.rpc
    }

    /// The request's `collection_name`, for the RPCs that have one.
    pub fn collection(&self) -> Option<&str> {
        self.inner.collection.as_deref()
    }

    /// When the call arrived, on tokio's clock.
    pub fn at(&self) -> Instant {
        self.inner.at
    }

    /// Whether the fault plan injected a fault into the call.
    pub fn is_faulted(&self) -> bool {
        self.inner.faulted
    }

    /// Whether the API key check refused the call (`UNAUTHENTICATED`, or `PERMISSION_DENIED`
    /// for a write with the read-only key). A refused call never reached the fault plan nor the
    /// handler.
    pub fn is_denied(&self) -> bool {
        self.inner.denied
    }

    /// Whether the call is a health probe (`qdrant.Qdrant/HealthCheck`), as a client's health
    /// checker sends in the background rather than on behalf of its caller.
    pub fn is_health_probe(&self) -> bool {
        self.inner.rpc == Rpc::HealthCheck
    }

    /// The decoded request as qdrant-client's message type `T` (`SearchPoints`,
    /// `UpsertPoints`…), or `None` if the call carries another type.
    pub fn message<T: Any>(&self) -> Option<&T> {
        self.inner.message.downcast_ref::<T>()
    }

    /// The decoded request, to downcast by hand.
    pub fn message_any(&self) -> &(dyn Any + Send + Sync) {
        &*self.inner.message
    }

    /// The caller's address (through a [`ChaosProxy`](crate::ChaosProxy): the proxy's).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// The request's gRPC metadata (headers such as `api-key` or `grpc-timeout`).
    pub fn metadata(&self) -> &MetadataMap {
        &self.inner.metadata
    }

    /// How long the client said it would wait (its `grpc-timeout` header), if it said.
    pub fn grpc_timeout(&self) -> Option<Duration> {
        parse_grpc_timeout(self.inner.metadata.get("grpc-timeout")?.to_str().ok()?)
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Call")
            .field("id", &inner.id)
            .field("connection_id", &inner.connection_id)
            .field("rpc", &inner.rpc)
            .field("collection", &inner.collection)
            .field("at", &inner.at)
            .field("faulted", &inner.faulted)
            .field("denied", &inner.denied)
            .field("remote_addr", &inner.remote_addr)
            .finish_non_exhaustive()
    }
}

impl CallLog {
    pub(crate) fn new() -> Self {
        CallLog::default()
    }

    /// A fresh request id: one atomic increment.
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records one call.
    pub(crate) fn record(&self, call: CallRecord<'_>) {
        let call = Call {
            inner: Arc::new(CallInner {
                id: call.id,
                connection_id: call.connection_id,
                rpc: call.rpc,
                collection: call.collection.map(str::to_owned),
                at: Instant::now(),
                faulted: call.faulted,
                denied: call.denied,
                remote_addr: call.remote_addr,
                metadata: call.metadata.clone(),
                message: call.message,
            }),
        };
        self.lock().push(call);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call recorded so far, in arrival order.
    pub fn entries(&self) -> Vec<Call> {
        self.lock().clone()
    }

    /// The calls for which `predicate` holds, in arrival order.
    ///
    /// ```
    /// # use qdrant_tower_testkit::CallLog;
    /// # use qdrant_tower_testkit::faults::Rpc;
    /// # fn check(calls: &CallLog) {
    /// // The searches that reached the server on the first connection.
    /// let first = calls.matching(|call| call.rpc() == Rpc::Search && call.connection_id() == 1);
    /// # let _ = first;
    /// # }
    /// ```
    pub fn matching(&self, predicate: impl Fn(&Call) -> bool) -> Vec<Call> {
        self.lock()
            .iter()
            .filter(|call| predicate(call))
            .cloned()
            .collect()
    }

    /// How many calls `predicate` holds for.
    ///
    /// ```
    /// # use qdrant_tower_testkit::CallLog;
    /// use qdrant_client::qdrant::UpsertPoints;
    /// # fn check(calls: &CallLog) {
    /// // Upserts of more than 100 points, as the server decoded them.
    /// let big = calls.count_where(|call| {
    ///     call.message::<UpsertPoints>().is_some_and(|upsert| upsert.points.len() > 100)
    /// });
    /// # let _ = big;
    /// # }
    /// ```
    pub fn count_where(&self, predicate: impl Fn(&Call) -> bool) -> usize {
        self.lock().iter().filter(|call| predicate(call)).count()
    }

    /// How many calls of `rpc` on `collection` reached the server (`""` for RPCs without a
    /// collection).
    pub fn count(&self, rpc: Rpc, collection: &str) -> usize {
        self.count_where(|call| is(call, rpc, collection))
    }

    /// How many of those got an injected fault.
    pub fn faulted(&self, rpc: Rpc, collection: &str) -> usize {
        self.count_where(|call| is(call, rpc, collection) && call.is_faulted())
    }

    /// When each call of `rpc` on `collection` arrived, in order.
    pub fn times(&self, rpc: Rpc, collection: &str) -> Vec<Instant> {
        self.lock()
            .iter()
            .filter(|call| is(call, rpc, collection))
            .map(Call::at)
            .collect()
    }

    /// How many calls of `rpc` reached the server, over every collection.
    pub fn count_rpc(&self, rpc: Rpc) -> usize {
        self.count_where(|call| call.rpc() == rpc)
    }

    /// How many calls reached the server in all, health probes included.
    pub fn total(&self) -> usize {
        self.lock().len()
    }

    /// How many calls reached the server in all, leaving out health probes
    /// ([`Call::is_health_probe`]), which a client's background health checker sends at its own
    /// pace.
    pub fn total_excluding_health_probes(&self) -> usize {
        self.count_where(|call| !call.is_health_probe())
    }

    /// How many calls got an injected fault in all.
    pub fn total_faulted(&self) -> usize {
        self.count_where(Call::is_faulted)
    }

    /// How many calls the API key check refused in all.
    pub fn total_denied(&self) -> usize {
        self.count_where(Call::is_denied)
    }

    /// Forgets every call recorded so far. Request ids keep counting.
    pub fn reset(&self) {
        self.lock().clear();
    }
}

fn is(call: &Call, rpc: Rpc, collection: &str) -> bool {
    call.rpc() == rpc && call.collection().unwrap_or_default() == collection
}

impl fmt::Debug for CallLog {
    /// Counts by RPC and collection, as `{"Points/Search `books`": "3 (1 faulted, 0 denied)"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = std::collections::BTreeMap::<(Rpc, String), [usize; 3]>::new();
        for call in self.lock().iter() {
            let key = (call.rpc(), call.collection().unwrap_or_default().to_owned());
            let count = counts.entry(key).or_default();
            count[0] += 1;
            count[1] += usize::from(call.is_faulted());
            count[2] += usize::from(call.is_denied());
        }
        let mut map = f.debug_map();
        for ((rpc, collection), [calls, faulted, denied]) in &counts {
            map.entry(
                &format_args!("{rpc} `{collection}`"),
                &format_args!("{calls} ({faulted} faulted, {denied} denied)"),
            );
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::{HealthCheckRequest, SearchPoints};

    use super::*;

    fn record(
        log: &CallLog,
        rpc: Rpc,
        collection: Option<&str>,
        connection_id: u64,
        faulted: bool,
    ) {
        let metadata = MetadataMap::new();
        let message: Arc<dyn Any + Send + Sync> = match rpc {
            Rpc::HealthCheck => Arc::new(HealthCheckRequest {}),
            _ => Arc::new(SearchPoints {
                collection_name: collection.unwrap_or_default().to_owned(),
                limit: 7,
                ..SearchPoints::default()
            }),
        };
        log.record(CallRecord {
            id: log.next_id(),
            connection_id,
            rpc,
            collection,
            faulted,
            denied: false,
            remote_addr: None,
            metadata: &metadata,
            message,
        });
    }

    #[tokio::test(start_paused = true)]
    async fn counts_and_times_are_kept_per_rpc_and_collection() {
        let log = CallLog::new();
        let start = Instant::now();
        record(&log, Rpc::Search, Some("a"), 1, false);
        tokio::time::advance(Duration::from_secs(2)).await;
        record(&log, Rpc::Search, Some("a"), 1, true);
        record(&log, Rpc::Search, Some("b"), 2, false);
        record(&log, Rpc::HealthCheck, None, 2, false);

        assert_eq!(log.count(Rpc::Search, "a"), 2);
        assert_eq!(log.faulted(Rpc::Search, "a"), 1);
        assert_eq!(log.count(Rpc::Search, "b"), 1);
        assert_eq!(log.count(Rpc::Search, "c"), 0);
        assert_eq!(log.count(Rpc::HealthCheck, ""), 1);
        assert_eq!(log.count_rpc(Rpc::Search), 3);
        assert_eq!(log.total(), 4);
        assert_eq!(log.total_excluding_health_probes(), 3);
        assert_eq!(log.total_faulted(), 1);
        assert_eq!(log.total_denied(), 0);
        assert_eq!(
            log.times(Rpc::Search, "a"),
            vec![start, start + Duration::from_secs(2)]
        );
        log.reset();
        assert_eq!(log.total(), 0);
        assert!(log.times(Rpc::Search, "a").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_tell_calls_apart_and_carry_the_request() {
        let log = CallLog::new();
        record(&log, Rpc::Search, Some("a"), 1, false);
        record(&log, Rpc::HealthCheck, None, 1, false);
        record(&log, Rpc::Search, Some("a"), 2, false);

        let entries = log.entries();
        let ids: Vec<u64> = entries.iter().map(Call::id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let connections: Vec<u64> = entries.iter().map(Call::connection_id).collect();
        assert_eq!(connections, [1, 1, 2]);
        assert!(entries[1].is_health_probe());
        assert!(!entries[0].is_health_probe());
        assert_eq!(entries[0].message::<SearchPoints>().unwrap().limit, 7);
        assert!(entries[0].message::<HealthCheckRequest>().is_none());
        assert_eq!(
            log.count_where(|call| call.connection_id() == 2 && call.rpc() == Rpc::Search),
            1
        );
        assert_eq!(log.matching(|call| !call.is_health_probe()).len(), 2);

        log.reset();
        record(&log, Rpc::Search, Some("a"), 3, false);
        assert_eq!(log.entries()[0].id(), 4, "ids stay unique after a reset");
        let debug = format!("{:?}", log.entries()[0]);
        assert!(
            debug.contains("Search") && debug.contains("id: 4"),
            "{debug}"
        );
    }
}
