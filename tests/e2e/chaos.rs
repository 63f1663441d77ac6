//! What each network fault looks like to a caller of `QdrantService`: the testkit server, a
//! `ChaosProxy` in front of it, and the client pointed at the proxy.
//!
//! Each test states the symptom — the `ErrorKind`, and whether the request may have reached
//! the server (`maybe_sent`) — since that is what the retry and breaker layers act on. Time
//! only enters where the fault is about time (latency, the request timeout), and then as a
//! bound the client guarantees.

use std::future::Future;
use std::time::Duration;

use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Classify, ErrorKind, QdrantService, VectorError, VectorResponse};
use qdrant_tower_testkit::{ChaosProxy, Direction, TestServer};
use tokio::time::Instant;
use tower::ServiceExt;

const COLLECTION: &str = "books";
/// The request timeout where the test is about it: long for loopback, short for a test.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// The request timeout where the test is not about it, so that a slow machine cannot turn
/// the symptom under test into a timeout.
const LONG_TIMEOUT: Duration = Duration::from_secs(5);

/// A server with a small collection, and a proxy in front of it.
struct Setup {
    proxy: ChaosProxy,
    _server: TestServer,
}

impl Setup {
    async fn start() -> Setup {
        let server = TestServer::start().await.expect("testkit server starts");
        // Filled directly, not through the proxy, so that no fault can get in the way.
        let direct = QdrantService::builder()
            .endpoint(server.url())
            .build()
            .expect("valid settings");
        direct
            .clone()
            .oneshot(
                CreateCollectionBuilder::new(COLLECTION)
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
            .oneshot(
                UpsertPointsBuilder::new(COLLECTION, points)
                    .wait(true)
                    .into(),
            )
            .await
            .expect("points upserted");
        let proxy = ChaosProxy::start(server.addr())
            .await
            .expect("proxy starts");
        Setup {
            proxy,
            _server: server,
        }
    }

    /// A client of the proxy with `timeout` per call. Its channel connects on the first call.
    fn client(&self, timeout: Duration) -> QdrantService {
        QdrantService::builder()
            .endpoint(self.proxy.url())
            .request_timeout(Some(timeout))
            .connect_timeout(Duration::from_millis(300))
            .build()
            .expect("valid settings")
    }
}

async fn search(client: &QdrantService) -> Result<VectorResponse, VectorError> {
    client
        .clone()
        .oneshot(SearchPointsBuilder::new(COLLECTION, vec![0.9, 0.1], 1).into())
        .await
}

/// A search that must succeed, returning the best hit's id.
async fn search_ok(client: &QdrantService) -> u64 {
    match search(client).await {
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

async fn search_err(client: &QdrantService) -> VectorError {
    match search(client).await {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(error) => error,
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
        assert_eq!(search_ok(&client).await, 1);
        assert_eq!(search_ok(&client).await, 1);

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
        search_ok(&client).await;

        // Hold the answer in the proxy, then reset the connection while the call waits.
        setup.proxy.latency(
            Direction::Downstream,
            Duration::from_secs(10),
            Duration::ZERO,
        );
        let before = setup.proxy.stats().downstream.received;
        let call = tokio::spawn({
            let client = client.clone();
            async move { search(&client).await }
        });
        while setup.proxy.stats().downstream.received == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        setup.proxy.reset_all().await;

        let error = call.await.unwrap().expect_err("the call fails");
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent(), "the server had the request: {error}");

        // The channel reconnects by itself on the next call.
        setup.proxy.clear();
        assert_eq!(search_ok(&client).await, 1);
    })
    .await;
}

#[tokio::test]
async fn reset_after_n_bytes_of_a_request_is_a_connect_error_that_may_have_been_sent() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(LONG_TIMEOUT);
        search_ok(&client).await;

        // 20 bytes: the request's HEADERS frame is cut short.
        setup.proxy.reset_after(Direction::Upstream, 20);
        let error = search_err(&client).await;
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
        let error = search_err(&setup.client(LONG_TIMEOUT)).await;
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
        search_ok(&connected).await;
        let client = setup.client(LONG_TIMEOUT);
        setup.proxy.refuse(true).await.unwrap();

        let error = search_err(&client).await;
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(!error.maybe_sent(), "refused means never sent: {error}");
        // Refusing does not touch open connections: a client already connected goes on.
        assert_eq!(search_ok(&connected).await, 1);

        // Accepting again, the same client recovers without being rebuilt.
        setup.proxy.refuse(false).await.unwrap();
        assert_eq!(search_ok(&client).await, 1);
    })
    .await;
}

#[tokio::test]
async fn blackhole_ends_in_the_client_request_timeout() {
    bounded(async {
        let setup = Setup::start().await;
        let client = setup.client(REQUEST_TIMEOUT);
        search_ok(&client).await;

        setup.proxy.blackhole(Direction::Both, true);
        let forwarded = setup.proxy.stats().upstream.forwarded;
        let started = Instant::now();
        let error = search_err(&client).await;
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
        search_ok(&client).await;

        // 5 bytes: the response's first frame header is cut short, then the connection closes.
        setup.proxy.close_after(Direction::Downstream, 5);
        let error = search_err(&client).await;
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
        search_ok(&client).await;

        let latency = Duration::from_millis(100);
        setup
            .proxy
            .latency(Direction::Downstream, latency, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(search_ok(&client).await, 1);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());

        setup.proxy.latency(
            Direction::Downstream,
            REQUEST_TIMEOUT + Duration::from_millis(300),
            Duration::ZERO,
        );
        let started = Instant::now();
        let error = search_err(&client).await;
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
