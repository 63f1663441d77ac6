//! What each network fault looks like to a caller of `QdrantService`: the testkit server, a
//! `ChaosProxy` in front of it, and the client pointed at the proxy.
//!
//! Each test states the symptom — the `ErrorKind`, and whether the request may have reached
//! the server (`maybe_sent`) — since that is what the retry and breaker layers act on. Time
//! only enters where the fault is about time (latency, bandwidth, a slow close, the request
//! timeout), and then as a lower bound the proxy or the client guarantees.

use std::future::Future;
use std::time::Duration;

use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, ScrollPointsBuilder, SearchPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, QdrantService, VectorError, VectorRequest, VectorResponse};
use qdrant_tower_testkit::{ChaosProxy, Direction, ProxyStats};

use crate::backend::{Backend, client_of};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// The request timeout where the test is about it: long for loopback, short for a test.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// The request timeout where the test is not about it, so that a slow machine cannot turn
/// the symptom under test into a timeout.
const LONG_TIMEOUT: Duration = Duration::from_secs(5);

/// A backend (the embedded server, or the real Qdrant at `QDRANT_URL`) with a small collection,
/// and a proxy in front of it.
struct Setup {
    proxy: ChaosProxy,
    backend: Backend,
    /// Two points: 1 at [1, 0] and 2 at [0, 1].
    books: String,
    /// Big points, for the tests about bandwidth; created on demand.
    shelf: String,
}

impl Setup {
    async fn start() -> Setup {
        let backend = Backend::start().await;
        let (books, shelf) = (backend.unique("books"), backend.unique("shelf"));
        // Filled directly, not through the proxy, so that no fault can get in the way.
        let direct = backend.direct();
        direct
            .clone()
            .oneshot(
                CreateCollectionBuilder::new(&books)
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                    .into(),
            )
            .await
            .expect("collection created");
        let points = vec![
            PointStruct::new(1, vec![1.0, 0.0], [("title", "Dune".into())]),
            PointStruct::new(2, vec![0.0, 1.0], [("title", "Emma".into())]),
        ];
        direct
            .oneshot(UpsertPointsBuilder::new(&books, points).wait(true).into())
            .await
            .expect("points upserted");
        let proxy = ChaosProxy::start(backend.addr())
            .await
            .expect("proxy starts");
        Setup {
            proxy,
            backend,
            books,
            shelf,
        }
    }

    /// A client of the proxy with `timeout` per call. Its channel connects on the first call.
    fn client(&self, timeout: Duration) -> QdrantService {
        self.pooled_client(timeout, 1)
    }

    /// A client of the proxy with `connections` channels, used round-robin: call `k` goes to
    /// channel `k % connections`, and each channel connects on its first call.
    fn pooled_client(&self, timeout: Duration, connections: usize) -> QdrantService {
        client_of(&self.proxy.url())
            .connections_per_endpoint(connections)
            .request_timeout(Some(timeout))
            .connect_timeout(Duration::from_millis(300))
            .build()
            .expect("valid settings")
    }

    /// Creates the shelf collection, directly on the backend.
    async fn shelf(&self) {
        self.backend
            .direct()
            .oneshot(
                CreateCollectionBuilder::new(&self.shelf)
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                    .into(),
            )
            .await
            .expect("shelf created");
    }

    /// Creates the shelf collection and fills it with `SHELF_POINTS` big points, directly on
    /// the backend.
    async fn full_shelf(&self) {
        self.shelf().await;
        self.backend
            .direct()
            .oneshot(self.fill_shelf())
            .await
            .expect("shelf filled");
    }

    /// A search of the small collection, best hit only.
    fn search_request(&self) -> VectorRequest {
        SearchPointsBuilder::new(&self.books, vec![0.9, 0.1], 1).into()
    }

    async fn search(&self, client: &QdrantService) -> Result<VectorResponse, VectorError> {
        client.clone().oneshot(self.search_request()).await
    }

    /// A search that must succeed, returning the best hit's id.
    async fn search_ok(&self, client: &QdrantService) -> u64 {
        match self.search(client).await {
            Ok(VectorResponse::Search(found)) => {
                let id = found.result[0].id.clone().expect("a hit has an id");
                match id.point_id_options {
                    Some(qdrant_tower::qdrant::point_id::PointIdOptions::Num(id)) => id,
                    other => panic!("unexpected id {other:?}"),
                }
            }
            other => panic!("expected search results, got {other:?}"),
        }
    }

    async fn search_err(&self, client: &QdrantService) -> VectorError {
        match self.search(client).await {
            Ok(response) => panic!("expected an error, got {response:?}"),
            Err(error) => error,
        }
    }

    /// An upsert of the whole shelf: at least 64 KiB on the wire.
    fn fill_shelf(&self) -> VectorRequest {
        let points = (0..u64::from(SHELF_POINTS))
            .map(|id| {
                PointStruct::new(
                    id,
                    vec![1.0, 0.0],
                    [("text", "x".repeat(TEXT_BYTES).into())],
                )
            })
            .collect::<Vec<_>>();
        UpsertPointsBuilder::new(&self.shelf, points)
            .wait(true)
            .into()
    }

    /// A scroll of the whole shelf with its payload: an answer of at least 64 KiB.
    fn read_shelf(&self) -> VectorRequest {
        ScrollPointsBuilder::new(&self.shelf)
            .limit(SHELF_POINTS)
            .with_payload(true)
            .into()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.backend
            .drop_collections(&[self.books.clone(), self.shelf.clone()]);
    }
}

const SHELF_POINTS: u32 = 64;
/// The text each point on the shelf carries: an upsert of the whole shelf, and a scroll
/// answering it, each carry at least `SHELF_POINTS * TEXT_BYTES` = 64 KiB.
const TEXT_BYTES: usize = 1024;

/// How long `bytes` take at least through a proxy forwarding `bytes_per_sec`: it lets the first
/// hundredth of a second's worth through at once, and paces the rest.
fn transfer_floor(bytes: usize, bytes_per_sec: u64) -> Duration {
    let paced = (bytes as u64).saturating_sub(bytes_per_sec / 100);
    Duration::from_secs_f64(paced as f64 / bytes_per_sec as f64)
}

/// Waits until `check` holds: the proxy's tasks update its counters on their own time.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Fails the test instead of hanging it.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .expect("the test finishes within 20 s")
}

#[tokio::test]
async fn healthy_proxy_passes_searches_through() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        assert_eq!(setup.search_ok(&client).await, 1);
        assert_eq!(setup.search_ok(&client).await, 1);

        let stats = setup.proxy.stats();
        assert_eq!(
            stats.accepted, 1,
            "one HTTP/2 connection carries both calls"
        );
        assert!(stats.upstream.forwarded > 0 && stats.downstream.forwarded > 0);
        assert_eq!(stats.reset, 0);
    })
    .await;
}

#[tokio::test]
async fn reset_during_a_call_is_a_connect_error_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        setup.search_ok(&client).await;

        // Hold the answer in the proxy, then reset the connection while the call waits.
        setup.proxy.latency(
            Direction::Downstream,
            Duration::from_secs(10),
            Duration::ZERO,
        );
        let before = setup.proxy.stats().downstream.received;
        let call = tokio::spawn(client.clone().oneshot(setup.search_request()));
        while setup.proxy.stats().downstream.received == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        setup.proxy.reset_all().await;

        let error = call.await.unwrap().expect_err("the call fails");
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "the server had the request: {error}");

        // The channel reconnects by itself on the next call.
        setup.proxy.clear();
        assert_eq!(setup.search_ok(&client).await, 1);
    })
    .await;
}

#[tokio::test]
async fn reset_after_n_bytes_of_a_request_is_a_connect_error_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        setup.search_ok(&client).await;

        // 20 bytes: the request's HEADERS frame is cut short.
        setup.proxy.reset_after(Direction::Upstream, 20);
        let error = setup.search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "{error}");
        assert_eq!(setup.proxy.stats().reset, 1);
    })
    .await;
}

#[tokio::test]
async fn reset_of_a_new_connection_after_the_preface_is_a_connect_error_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        // Each connection is reset once the 24-byte HTTP/2 client preface has passed.
        setup.proxy.reset_after(Direction::Upstream, 24);
        let error = setup.search_err(&setup.client(LONG_TIMEOUT)).await;
        assert_eq!(
            setup.proxy.stats().upstream.forwarded,
            24,
            "the server saw no request"
        );
        // Still ambiguous to the client: h2's handshake is over once the preface is written
        // (it does not wait for the server's SETTINGS), so tonic reports the reset as a broken
        // connection under the request, not as a failed connect.
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "{error}");
    })
    .await;
}

#[tokio::test]
async fn refused_connection_is_a_connect_error_never_sent() {
    bounded(async {
        let setup = Setup::start().await;
        let connected = setup.client(LONG_TIMEOUT);
        setup.search_ok(&connected).await;
        let client = setup.client(LONG_TIMEOUT);
        setup.proxy.refuse(true).await.unwrap();

        let error = setup.search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(!error.maybe_sent(), "refused means never sent: {error}");
        // Refusing does not touch open connections: a client already connected goes on.
        assert_eq!(setup.search_ok(&connected).await, 1);

        // Accepting again, the same client recovers without being rebuilt.
        setup.proxy.refuse(false).await.unwrap();
        assert_eq!(setup.search_ok(&client).await, 1);
    })
    .await;
}

#[tokio::test]
async fn blackhole_ends_in_the_client_request_timeout() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(REQUEST_TIMEOUT);
        setup.search_ok(&client).await;

        setup.proxy.blackhole(Direction::Both, true);
        let forwarded = setup.proxy.stats().upstream.forwarded;
        let started = Instant::now();
        let error = setup.search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(error.maybe_sent(), "{error}");
        assert!(
            started.elapsed() >= REQUEST_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        let stats = setup.proxy.stats();
        assert!(
            stats.upstream.received > forwarded,
            "the proxy read the call"
        );
        assert_eq!(
            stats.upstream.forwarded, forwarded,
            "the server never saw it"
        );
    })
    .await;
}

#[tokio::test]
async fn close_after_n_bytes_of_a_response_is_a_connect_error_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        setup.search_ok(&client).await;

        // 5 bytes: the response's first frame header is cut short, then the connection closes.
        setup.proxy.close_after(Direction::Downstream, 5);
        let error = setup.search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "{error}");
        assert_eq!(setup.proxy.stats().reset, 0, "a FIN, not a reset");
    })
    .await;
}

#[tokio::test]
async fn latency_under_the_timeout_slows_calls_and_over_it_times_them_out() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(REQUEST_TIMEOUT);
        setup.search_ok(&client).await;

        let latency = Duration::from_millis(100);
        setup
            .proxy
            .latency(Direction::Downstream, latency, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(setup.search_ok(&client).await, 1);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());

        setup.proxy.latency(
            Direction::Downstream,
            REQUEST_TIMEOUT + Duration::from_millis(300),
            Duration::ZERO,
        );
        let started = Instant::now();
        let error = setup.search_err(&client).await;
        assert!(
            started.elapsed() >= REQUEST_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(error.maybe_sent(), "{error}");
    })
    .await;
}

#[tokio::test]
async fn a_large_request_throttled_past_the_request_timeout_is_a_timeout_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        setup.shelf().await;
        let client = setup.client(REQUEST_TIMEOUT);
        setup.search_ok(&client).await;

        // The server answers only once it has the whole request, which the proxy cannot
        // deliver before the timeout.
        const RATE: u64 = 50_000;
        let floor = transfer_floor(SHELF_POINTS as usize * TEXT_BYTES, RATE);
        assert!(floor > 2 * REQUEST_TIMEOUT, "{floor:?}");
        setup.proxy.bandwidth(Direction::Upstream, RATE);
        let started = Instant::now();
        let error = client
            .clone()
            .oneshot(setup.fill_shelf())
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(
            error.maybe_sent(),
            "part of the write reached the server: {error}"
        );
        assert!(took >= REQUEST_TIMEOUT, "{took:?}");
    })
    .await;
}

/// The request timeout bounds the whole call, body included. (tonic's own timeout, from
/// `grpc-timeout`, ends when the answer's headers arrive; `QdrantService` bounds the rest, so an
/// answer that starts in time but trickles in does not hold the caller past its timeout.)
#[tokio::test]
async fn a_throttled_large_answer_past_the_request_timeout_is_a_timeout() {
    bounded(async {
        let setup = Setup::start().await;
        setup.full_shelf().await;
        let client = setup.client(REQUEST_TIMEOUT);
        setup.search_ok(&client).await;

        // The headers pass in the first slice; the 64 KiB of payload take longer than the
        // timeout.
        const RATE: u64 = 100_000;
        let floor = transfer_floor(SHELF_POINTS as usize * TEXT_BYTES, RATE);
        assert!(floor > REQUEST_TIMEOUT, "{floor:?}");
        setup.proxy.bandwidth(Direction::Downstream, RATE);
        let started = Instant::now();
        let error = client
            .clone()
            .oneshot(setup.read_shelf())
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(error.maybe_sent());
        assert!(took >= REQUEST_TIMEOUT, "{took:?}");
        assert!(
            took < floor,
            "the caller is released at the timeout: {took:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_generous_bandwidth_limit_slows_large_calls_but_lets_them_succeed_within_the_timeout() {
    bounded(async {
        let setup = Setup::start().await;
        setup.shelf().await;
        let client = setup.client(REQUEST_TIMEOUT);
        setup.search_ok(&client).await;

        // 2 MB/s: 64 KiB take some 20 ms each way, far from the timeout, yet measurably paced.
        const RATE: u64 = 2_000_000;
        let floor = transfer_floor(SHELF_POINTS as usize * TEXT_BYTES, RATE);
        assert!(
            floor > Duration::ZERO && floor * 10 < REQUEST_TIMEOUT,
            "{floor:?}"
        );
        setup.proxy.bandwidth(Direction::Both, RATE);

        let started = Instant::now();
        let written = client.clone().oneshot(setup.fill_shelf()).await;
        assert!(written.is_ok(), "{written:?}");
        assert!(started.elapsed() >= floor, "{:?}", started.elapsed());

        let started = Instant::now();
        match client.clone().oneshot(setup.read_shelf()).await {
            Ok(VectorResponse::Scroll(scrolled)) => {
                assert_eq!(scrolled.result.len(), SHELF_POINTS as usize);
                assert!(scrolled.result.iter().all(|point| {
                    point.payload["text"]
                        .as_str()
                        .is_some_and(|text| text.len() == TEXT_BYTES)
                }));
            }
            other => panic!("expected the whole shelf, got {other:?}"),
        }
        assert!(started.elapsed() >= floor, "{:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn slow_close_holds_back_the_error_of_a_truncated_answer_for_at_least_the_delay() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        setup.search_ok(&client).await;

        // On its own it changes nothing for calls: a live connection sends no FIN to hold.
        let delay = Duration::from_millis(300);
        setup.proxy.slow_close(Direction::Downstream, delay);
        assert_eq!(setup.search_ok(&client).await, 1);

        // With a close, the client is left waiting on a truncated frame until the FIN comes.
        setup.proxy.close_after(Direction::Downstream, 5);
        let started = Instant::now();
        let error = setup.search_err(&client).await;
        let took = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "{error}");
        assert!(took >= delay, "{took:?}");
        assert_eq!(setup.proxy.stats().reset, 0, "a FIN, not a reset");
    })
    .await;
}

#[tokio::test]
async fn partial_outage_fails_exactly_the_calls_routed_to_the_seeded_connections() {
    bounded(async {
        const CONNECTIONS: u64 = 8;
        let setup = Setup::start().await;
        // Choose the connections before they exist, with no effect yet: every call passes.
        setup.proxy.partial(0.5, 7);
        let client = setup.pooled_client(REQUEST_TIMEOUT, CONNECTIONS as usize);
        // Sequential calls: the k-th channel connects on call k, and is the proxy's
        // connection k.
        for _ in 0..CONNECTIONS {
            assert_eq!(setup.search_ok(&client).await, 1);
        }
        let toxics = setup.proxy.toxics();
        let affected: Vec<bool> = (0..CONNECTIONS).map(|n| toxics.affects(n)).collect();
        assert!(
            affected.contains(&true) && affected.contains(&false),
            "the seed picks some connections, not all: {affected:?}"
        );
        let stats = setup.proxy.stats();
        assert_eq!(stats.accepted, CONNECTIONS);
        assert_eq!(
            stats.affected,
            affected.iter().filter(|hit| **hit).count() as u64
        );

        // Now swallow everything on the chosen connections, and send one call down each
        // channel in round-robin order, all at once.
        setup.proxy.blackhole(Direction::Both, true);
        let mut calls = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut service = client.clone();
            // Readiness picks the channel; the call is sent on it.
            service.ready().await.expect("a channel is ready");
            let request = setup.search_request();
            calls.push(tokio::spawn(service.call(request)));
        }
        let mut failed = Vec::new();
        for call in calls {
            match call.await.expect("the call does not panic") {
                Ok(_) => failed.push(false),
                Err(error) => {
                    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
                    assert!(error.maybe_sent(), "{error}");
                    failed.push(true);
                }
            }
        }
        assert_eq!(failed, affected, "failed calls, by connection");
    })
    .await;
}

#[tokio::test]
async fn stats_count_a_pooled_clients_connections_and_the_bytes_both_ways() {
    bounded(async {
        let setup = Setup::start().await;
        assert_eq!(setup.proxy.stats(), ProxyStats::default());
        let client = setup.pooled_client(LONG_TIMEOUT, 3);
        for _ in 0..6 {
            assert_eq!(setup.search_ok(&client).await, 1);
        }

        let stats = setup.proxy.stats();
        assert_eq!(
            (stats.accepted, stats.affected, stats.open, stats.reset),
            (3, 3, 3, 0),
            "one connection per channel, each reused: {stats:?}"
        );
        assert!(
            stats.upstream.forwarded >= 3 * 24,
            "at least each connection's 24-byte HTTP/2 preface: {stats:?}"
        );
        assert!(stats.downstream.forwarded > 0, "{stats:?}");
        assert!(stats.upstream.received >= stats.upstream.forwarded);
        assert!(stats.downstream.received >= stats.downstream.forwarded);

        // Dropping the client closes its connections, cleanly.
        drop(client);
        eventually("the client's connections are closed", || {
            setup.proxy.stats().open == 0
        })
        .await;
        let stats = setup.proxy.stats();
        assert_eq!((stats.accepted, stats.reset), (3, 0), "{stats:?}");
    })
    .await;
}

/// The pool as the network sees it: more TCP connections under load, closed again when idle,
/// and a connection the network cut replaced by a new one.
#[tokio::test]
async fn the_pool_opens_connections_under_load_and_closes_them_when_idle() {
    bounded(async {
        let setup = Setup::start().await;
        let client = client_of(&setup.proxy.url())
            .connections(1, 3)
            .grow_at(2)
            .idle_timeout(Duration::from_millis(200))
            .request_timeout(Some(LONG_TIMEOUT))
            .build()
            .expect("valid settings");
        setup.search_ok(&client).await;
        assert_eq!(setup.proxy.stats().accepted, 1);

        // Slow answers keep 6 calls in flight: the pool opens two more connections.
        setup.proxy.latency(
            Direction::Downstream,
            Duration::from_millis(300),
            Duration::ZERO,
        );
        let calls: Vec<_> = (0..6)
            .map(|_| tokio::spawn(client.clone().oneshot(setup.search_request())))
            .collect();
        for call in calls {
            call.await.unwrap().expect("slow but answered");
        }
        let stats = client.pool_stats()[0].clone();
        assert_eq!((stats.connections, stats.grown), (3, 2), "{stats:?}");
        assert_eq!(setup.proxy.stats().accepted, 3, "three TCP connections");

        // Idle: back to one connection, and the others are closed, not just unused.
        setup.proxy.clear();
        eventually("the pool shrinks to one", || {
            client.pool_stats()[0].connections == 1
        })
        .await;
        eventually("the idle connections close", || {
            setup.proxy.stats().open == 1
        })
        .await;

        // The network cuts the connection: the call fails, its slot gets a new channel, and
        // the next call connects afresh.
        setup.proxy.reset_all().await;
        let error = setup.search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(client.pool_stats()[0].replaced >= 1);
        setup.search_ok(&client).await;
        assert_eq!(setup.proxy.stats().accepted, 4, "a new connection");
    })
    .await;
}

/// The read cache against the backend (the real Qdrant too): repeats and a burst of identical
/// reads reach it once, a write through the stack invalidates. Attempts that reach
/// `QdrantService` are counted by a `per_attempt` hook.
#[tokio::test]
async fn the_read_cache_sends_repeats_and_bursts_to_qdrant_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use qdrant_tower::config::StackConfig;
    use qdrant_tower::{Profile, QdrantStack};

    bounded(async {
        let setup = Setup::start().await;
        let attempts = Arc::new(AtomicUsize::new(0));
        let mut config = StackConfig::for_profile(Profile::Testing);
        config.endpoints = vec![setup.proxy.url()];
        config.cache.collections = vec![setup.books.clone()];
        let stack = QdrantStack::builder()
            .config(config)
            .api_key(
                std::env::var("QDRANT_API_KEY")
                    .ok()
                    .filter(|key| !key.is_empty()),
            )
            .per_attempt(crate::front_door::Counting(attempts.clone()))
            .build()
            .expect("valid settings");
        let client = stack.client();
        let search = || SearchPointsBuilder::new(&setup.books, vec![0.9, 0.1], 2);
        for _ in 0..3 {
            let found = client.search(search()).await.expect("a search");
            assert_eq!(found.result.len(), 2);
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "repeats are hits");

        // A slow backend and ten identical reads at once: one attempt.
        setup.proxy.latency(
            Direction::Downstream,
            Duration::from_millis(200),
            Duration::ZERO,
        );
        let other = || SearchPointsBuilder::new(&setup.books, vec![0.1, 0.9], 1);
        let burst: Vec<_> = (0..10).map(|_| client.search(other())).collect();
        for found in futures_util::future::join_all(burst).await {
            assert_eq!(found.expect("a search").result.len(), 1);
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "single-flight");
        setup.proxy.clear();

        // A write through the stack: the next read goes to Qdrant and sees it.
        client
            .upsert(
                UpsertPointsBuilder::new(
                    &setup.books,
                    vec![PointStruct::new(
                        3,
                        vec![1.0, 1.0],
                        [("title", "Ulysses".into())],
                    )],
                )
                .wait(true),
            )
            .await
            .expect("an upsert");
        // The same request as the burst's, whose cached answer was Emma (id 2): now Ulysses.
        let found = client.search(other()).await.expect("a search");
        let best = found.result[0]
            .id
            .clone()
            .and_then(|id| id.point_id_options);
        assert_eq!(
            best,
            Some(qdrant_tower::qdrant::point_id::PointIdOptions::Num(3)),
            "read your write: the stale entry was not served"
        );
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            4,
            "upsert + the search after it"
        );
    })
    .await;
}
