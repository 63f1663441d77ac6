//! `QdrantService` end to end: against the testkit server (Qdrant's engine behind Qdrant's gRPC
//! API) or, when `QDRANT_URL` is set, a real Qdrant; and against small loopback servers that
//! answer chosen statuses, or misbehave, for the error mapping.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use qdrant_client::Payload;
use qdrant_client::qdrant::points_update_operation::{self, PointStructList};
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, DeleteCollectionBuilder,
    DeletePayloadPointsBuilder, DeletePointsBuilder, Distance, Filter, GetPointsBuilder, PointId,
    PointStruct, PointVectors, PointsIdsList, PointsUpdateOperation, QueryPointsBuilder, Range,
    ScrollPointsBuilder, SearchBatchPointsBuilder, SearchPoints, SearchPointsBuilder,
    SetPayloadPointsBuilder, UpdateBatchPoints, UpdateBatchPointsBuilder, UpdatePointVectors,
    UpdatePointVectorsBuilder, UpsertPoints, UpsertPointsBuilder, VectorParamsBuilder,
    point_id::PointIdOptions,
};
use qdrant_tower_client::{
    ChunkOptions, InvalidRequest, QdrantService, VectorError, VectorRequest, VectorResponse,
    upsert_chunked,
};
use qdrant_tower_layers::health::HealthSnapshot;
use qdrant_tower_layers::{
    DeadlineLayer, ErrorKind, HealthCheck, HealthConfig, HealthStatus, RetryLayer, RetryPolicy,
};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::parse_grpc_timeout;
use serde_json::json;
use tonic::{Code, Status};
use tower::{Layer, ServiceExt};

/// The backend under test: a real Qdrant when `QDRANT_URL` is set, else an embedded server.
struct Backend {
    url: String,
    _server: Option<TestServer>,
}

impl Backend {
    async fn start() -> Backend {
        match std::env::var("QDRANT_URL") {
            Ok(url) if !url.is_empty() => Backend { url, _server: None },
            _ => {
                let server = TestServer::start().await.expect("testkit server starts");
                Backend {
                    url: server.url(),
                    _server: Some(server),
                }
            }
        }
    }

    fn service(&self) -> QdrantService {
        QdrantService::builder()
            .endpoint(&self.url)
            .api_key(std::env::var("QDRANT_API_KEY").ok())
            .build()
            .expect("valid settings")
    }
}

/// A collection name no other test (or earlier run against a real Qdrant) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn send(service: &QdrantService, request: impl Into<VectorRequest>) -> VectorResponse {
    let request = request.into();
    let operation = qdrant_tower_layers::RequestInfo::operation(&request);
    match service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(error) => panic!("{operation} failed: {error}"),
    }
}

async fn fail(service: &QdrantService, request: impl Into<VectorRequest>) -> VectorError {
    match service.clone().oneshot(request.into()).await {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(error) => error,
    }
}

async fn create_collection(service: &QdrantService, name: &str) {
    let created = send(
        service,
        CreateCollectionBuilder::new(name)
            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
    )
    .await;
    assert!(matches!(created, VectorResponse::CreateCollection(r) if r.result));
}

fn payload(value: serde_json::Value) -> Payload {
    Payload::try_from(value).expect("a JSON object")
}

fn ids(points: impl IntoIterator<Item = Option<PointId>>) -> Vec<String> {
    let mut ids: Vec<String> = points
        .into_iter()
        .map(|id| match id.and_then(|id| id.point_id_options) {
            Some(PointIdOptions::Num(num)) => num.to_string(),
            Some(PointIdOptions::Uuid(uuid)) => uuid,
            None => "?".into(),
        })
        .collect();
    ids.sort();
    ids
}

const UUID: &str = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";

fn sample_points() -> Vec<PointStruct> {
    vec![
        PointStruct::new(
            1,
            vec![1.0, 0.0, 0.0, 0.0],
            payload(json!({"city": "Berlin", "pop": 3.6, "tags": ["capital"]})),
        ),
        PointStruct::new(
            2,
            vec![0.9, 0.1, 0.0, 0.0],
            payload(json!({"city": "Hamburg", "pop": 1.8})),
        ),
        PointStruct::new(
            3,
            vec![0.0, 1.0, 0.0, 0.0],
            payload(json!({"city": "Paris", "pop": 2.1, "tags": ["capital"]})),
        ),
        PointStruct::new(
            UUID,
            vec![0.0, 0.0, 1.0, 0.0],
            payload(json!({"city": "Lyon", "pop": 0.5, "meta": {"river": "Rhone"}})),
        ),
    ]
}

#[tokio::test]
async fn every_core_operation_round_trips_through_the_service() {
    let backend = Backend::start().await;
    let service = backend.service();
    let name = unique("roundtrip");

    let health = send(&service, VectorRequest::health_check()).await;
    assert!(matches!(health, VectorResponse::HealthCheck(reply) if !reply.version.is_empty()));

    create_collection(&service, &name).await;
    let exists = send(
        &service,
        qdrant_client::qdrant::CollectionExistsRequest {
            collection_name: name.clone(),
        },
    )
    .await;
    assert!(
        matches!(exists, VectorResponse::CollectionExists(r) if r.result.is_some_and(|r| r.exists))
    );
    let listed = send(&service, qdrant_client::qdrant::ListCollectionsRequest {}).await;
    let VectorResponse::ListCollections(listed) = listed else {
        unreachable!()
    };
    assert!(listed.collections.iter().any(|c| c.name == name));

    let upserted = send(
        &service,
        UpsertPointsBuilder::new(&name, sample_points()).wait(true),
    )
    .await;
    assert!(matches!(upserted, VectorResponse::Upsert(r) if r.result.is_some()));

    let info = send(
        &service,
        qdrant_client::qdrant::GetCollectionInfoRequest {
            collection_name: name.clone(),
        },
    )
    .await;
    let VectorResponse::GetCollection(info) = info else {
        unreachable!()
    };
    assert_eq!(info.result.and_then(|r| r.points_count), Some(4));

    let got = send(
        &service,
        GetPointsBuilder::new(&name, vec![1.into(), PointId::from(UUID)]).with_payload(true),
    )
    .await;
    let VectorResponse::Get(got) = got else {
        unreachable!()
    };
    assert_eq!(ids(got.result.iter().map(|p| p.id.clone())), ["1", UUID]);
    let lyon = got
        .result
        .iter()
        .find(|p| {
            p.payload
                .get("city")
                .is_some_and(|c| c.as_str().map(String::as_str) == Some("Lyon"))
        })
        .expect("Lyon is returned with its payload");
    assert!(lyon.payload.contains_key("meta"));

    // Search with a filter: nearest to Berlin among the capitals → Berlin, then Paris.
    let search = send(
        &service,
        SearchPointsBuilder::new(&name, vec![1.0, 0.0, 0.0, 0.0], 10)
            .filter(Filter::must([Condition::matches(
                "tags",
                "capital".to_string(),
            )]))
            .with_payload(true),
    )
    .await;
    let VectorResponse::Search(search) = search else {
        unreachable!()
    };
    let order: Vec<_> = search
        .result
        .iter()
        .map(|p| ids([p.id.clone()])[0].clone())
        .collect();
    assert_eq!(order, ["1", "3"]);

    let batch = send(
        &service,
        SearchBatchPointsBuilder::new(
            &name,
            vec![
                SearchPointsBuilder::new(&name, vec![0.0, 1.0, 0.0, 0.0], 1).build(),
                SearchPointsBuilder::new(&name, vec![0.0, 0.0, 1.0, 0.0], 1).build(),
            ],
        ),
    )
    .await;
    let VectorResponse::SearchBatch(batch) = batch else {
        unreachable!()
    };
    let tops: Vec<_> = batch
        .result
        .iter()
        .map(|b| ids([b.result[0].id.clone()])[0].clone())
        .collect();
    assert_eq!(tops, ["3", UUID]);

    let query = send(
        &service,
        QueryPointsBuilder::new(&name)
            .query(vec![0.9, 0.1, 0.0, 0.0])
            .filter(Filter::must([Condition::range(
                "pop",
                Range {
                    gte: Some(1.0),
                    ..Default::default()
                },
            )]))
            .limit(2),
    )
    .await;
    let VectorResponse::Query(query) = query else {
        unreachable!()
    };
    assert_eq!(ids(query.result.iter().map(|p| p.id.clone())), ["1", "2"]);

    let scrolled = send(&service, ScrollPointsBuilder::new(&name).limit(3)).await;
    let VectorResponse::Scroll(page) = scrolled else {
        unreachable!()
    };
    assert_eq!(page.result.len(), 3);
    let rest = send(
        &service,
        ScrollPointsBuilder::new(&name)
            .limit(3)
            .offset(page.next_page_offset.expect("a second page")),
    )
    .await;
    let VectorResponse::Scroll(rest) = rest else {
        unreachable!()
    };
    assert_eq!(rest.result.len(), 1);
    assert!(rest.next_page_offset.is_none());

    let count = send(
        &service,
        CountPointsBuilder::new(&name)
            .filter(Filter::must([Condition::matches(
                "city",
                "Paris".to_string(),
            )]))
            .exact(true),
    )
    .await;
    assert!(matches!(count, VectorResponse::Count(c) if c.result.map(|r| r.count) == Some(1)));

    // Payload: merge a key, overwrite another point's whole payload, delete a key.
    send(
        &service,
        SetPayloadPointsBuilder::new(&name, payload(json!({"visited": true})))
            .points_selector(PointsIdsList {
                ids: vec![1.into()],
            })
            .wait(true),
    )
    .await;
    send(
        &service,
        VectorRequest::overwrite_payload(
            SetPayloadPointsBuilder::new(&name, payload(json!({"only": 1})))
                .points_selector(PointsIdsList {
                    ids: vec![2.into()],
                })
                .wait(true),
        ),
    )
    .await;
    send(
        &service,
        DeletePayloadPointsBuilder::new(&name, vec!["pop".to_string()])
            .points_selector(PointsIdsList {
                ids: vec![3.into()],
            })
            .wait(true),
    )
    .await;
    let got = send(
        &service,
        GetPointsBuilder::new(&name, vec![1.into(), 2.into(), 3.into()]).with_payload(true),
    )
    .await;
    let VectorResponse::Get(got) = got else {
        unreachable!()
    };
    let keys = |id: u64| {
        let point = got
            .result
            .iter()
            .find(|p| ids([p.id.clone()]) == [id.to_string()])
            .unwrap();
        let mut keys: Vec<_> = point.payload.keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(1), ["city", "pop", "tags", "visited"]);
    assert_eq!(keys(2), ["only"]);
    assert_eq!(keys(3), ["city", "tags"]);

    // Delete by id, then by filter.
    send(
        &service,
        DeletePointsBuilder::new(&name)
            .points(PointsIdsList {
                ids: vec![PointId::from(UUID)],
            })
            .wait(true),
    )
    .await;
    send(
        &service,
        DeletePointsBuilder::new(&name)
            .points(Filter::must([Condition::matches(
                "city",
                "Berlin".to_string(),
            )]))
            .wait(true),
    )
    .await;
    let count = send(&service, CountPointsBuilder::new(&name).exact(true)).await;
    assert!(matches!(count, VectorResponse::Count(c) if c.result.map(|r| r.count) == Some(2)));

    let deleted = send(&service, DeleteCollectionBuilder::new(&name)).await;
    assert!(matches!(deleted, VectorResponse::DeleteCollection(r) if r.result));
}

#[tokio::test]
async fn qdrant_errors_arrive_classified_with_operation_and_collection() {
    let backend = Backend::start().await;
    let service = backend.service();

    let missing = unique("missing");
    let error = fail(
        &service,
        SearchPointsBuilder::new(&missing, vec![1.0, 0.0, 0.0, 0.0], 3),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(error.code(), Some(Code::NotFound));
    assert_eq!(
        (error.operation(), error.collection()),
        ("search", Some(missing.as_str()))
    );
    assert!(
        error.message().contains(&missing),
        "Qdrant names the collection: {error}"
    );

    let name = unique("dimension");
    create_collection(&service, &name).await;
    let error = fail(
        &service,
        UpsertPointsBuilder::new(
            &name,
            vec![PointStruct::new(1, vec![1.0, 2.0, 3.0], Payload::new())],
        )
        .wait(true),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert!(error.maybe_sent(), "the server itself rejected it");
    assert!(error.message().contains("dimension"), "{error}");

    let error = fail(
        &service,
        CreateCollectionBuilder::new(&name)
            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
    )
    .await;
    assert!(!error.kind().is_transient(), "{error}");
    assert!(error.message().contains("already exists"), "{error}");
    send(&service, DeleteCollectionBuilder::new(&name)).await;
}

#[tokio::test]
async fn invalid_requests_fail_before_anything_is_sent() {
    // Nothing listens here: a request that got as far as the network would fail with Connect.
    let service = QdrantService::from_url(format!("http://{}", closed_port().await)).unwrap();
    let error = fail(
        &service,
        SearchPointsBuilder::new("docs", vec![0.5, f32::NAN], 3),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(!error.maybe_sent());
    assert!(matches!(
        error.invalid_request(),
        Some(InvalidRequest::NonFiniteVector { index: 1, .. })
    ));
    let error = fail(&service, SearchPointsBuilder::new("", vec![0.5], 3)).await;
    assert!(
        error.to_string().contains("`collection_name` is empty"),
        "{error}"
    );
}

#[tokio::test]
async fn chunked_upsert_accounts_for_every_chunk() {
    let backend = Backend::start().await;
    let service = backend.service();
    let name = unique("chunked");
    create_collection(&service, &name).await;

    let mut points: Vec<_> = (0..250_u64)
        .map(|i| PointStruct::new(i, vec![1.0, i as f32, 0.5, 0.25], payload(json!({"i": i}))))
        .collect();
    // One bad point spoils its chunk (points 100..200) and no other.
    points[150] = PointStruct::new(150, vec![1.0, f32::NAN, 0.0, 0.0], Payload::new());
    let report = upsert_chunked(
        service.clone(),
        UpsertPointsBuilder::new(&name, points).wait(true).build(),
        ChunkOptions {
            chunk_size: 100,
            concurrency: 2,
        },
    )
    .await;

    assert_eq!(
        report
            .succeeded
            .iter()
            .map(|c| (c.index, c.points))
            .collect::<Vec<_>>(),
        [(0, 100), (2, 50)]
    );
    assert_eq!(report.failed.len(), 1);
    let failed = &report.failed[0];
    assert_eq!((failed.index, failed.request.points.len()), (1, 100));
    assert_eq!(failed.error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(report.points_written(), 150);
    let count = send(&service, CountPointsBuilder::new(&name).exact(true)).await;
    assert!(matches!(count, VectorResponse::Count(c) if c.result.map(|r| r.count) == Some(150)));
    send(&service, DeleteCollectionBuilder::new(&name)).await;
}

// ---------------------------------------------------------------------------------------------
// Loopback servers that answer what a test tells them to, for the error mapping.

/// What the answering server replies, given the request headers: a status, or never.
type Reply = Arc<dyn Fn(&http::HeaderMap) -> Option<Status> + Send + Sync>;

/// One call as a loopback server received it: its headers and body (its gRPC frames).
type Call = (http::HeaderMap, Vec<u8>);

/// What a loopback server received, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Call>>>);

impl Received {
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

/// Answers every `qdrant.Points` call with whatever `reply` says, after reading the whole
/// request and recording it.
#[derive(Clone)]
struct Answer {
    reply: Reply,
    received: Received,
}

impl tonic::server::NamedService for Answer {
    const NAME: &'static str = "qdrant.Points";
}

impl tower::Service<http::Request<tonic::body::Body>> for Answer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        use hyper::body::Body as _;
        let (reply, received) = (self.reply.clone(), self.received.clone());
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut body = std::pin::pin!(body);
            let mut bytes = Vec::new();
            while let Some(Ok(frame)) =
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            let status = reply(&parts.headers);
            received.0.lock().unwrap().push((parts.headers, bytes));
            match status {
                Some(status) => Ok(status.into_http()),
                None => std::future::pending().await,
            }
        })
    }
}

/// A server task that stops when dropped.
struct Serving {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answering(
    reply: impl Fn(&http::HeaderMap) -> Option<Status> + Send + Sync + 'static,
) -> Serving {
    serve(
        tonic::transport::Server::builder(),
        reply,
        Received::default(),
    )
    .await
}

/// An answering server that records what it receives.
async fn recording(
    reply: impl Fn(&http::HeaderMap) -> Option<Status> + Send + Sync + 'static,
) -> (Serving, Received) {
    let received = Received::default();
    let server = serve(tonic::transport::Server::builder(), reply, received.clone()).await;
    (server, received)
}

async fn serve(
    mut server: tonic::transport::Server,
    reply: impl Fn(&http::HeaderMap) -> Option<Status> + Send + Sync + 'static,
    received: Received,
) -> Serving {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.add_service(Answer {
        reply: Arc::new(reply),
        received,
    });
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Serving { addr, task }
}

async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
    // The listener drops here: connecting is refused.
}

fn search() -> VectorRequest {
    SearchPointsBuilder::new("docs", vec![1.0, 0.0], 3).into()
}

fn with_headers(code: Code, headers: &'static [(&'static str, &'static str)]) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (key, value) in headers {
        metadata.insert(*key, value.parse().unwrap());
    }
    Status::with_metadata(code, "chosen by the test", metadata)
}

/// A status with headers, and the kind and retry-after hint it must map to.
type StatusCase = (
    Code,
    &'static [(&'static str, &'static str)],
    ErrorKind,
    Option<Duration>,
);

#[tokio::test]
async fn every_status_maps_to_its_kind_over_the_wire() {
    let table: &[StatusCase] = &[
        (Code::Unavailable, &[], ErrorKind::Unavailable, None),
        (Code::DeadlineExceeded, &[], ErrorKind::Timeout, None),
        (Code::Internal, &[], ErrorKind::Internal, None),
        (Code::Unknown, &[], ErrorKind::Internal, None),
        (Code::DataLoss, &[], ErrorKind::Internal, None),
        (
            Code::ResourceExhausted,
            &[("retry-after", "3")],
            ErrorKind::RateLimited,
            Some(Duration::from_secs(3)),
        ),
        (
            Code::ResourceExhausted,
            &[("qdrant-insufficient-storage", "1")],
            ErrorKind::InsufficientStorage,
            None,
        ),
        (Code::InvalidArgument, &[], ErrorKind::InvalidRequest, None),
        (
            Code::FailedPrecondition,
            &[],
            ErrorKind::InvalidRequest,
            None,
        ),
        (Code::OutOfRange, &[], ErrorKind::InvalidRequest, None),
        (Code::NotFound, &[], ErrorKind::NotFound, None),
        (Code::AlreadyExists, &[], ErrorKind::AlreadyExists, None),
        (
            Code::PermissionDenied,
            &[],
            ErrorKind::PermissionDenied,
            None,
        ),
        (Code::Unauthenticated, &[], ErrorKind::Unauthenticated, None),
        (Code::Cancelled, &[], ErrorKind::Cancelled, None),
        (Code::Aborted, &[], ErrorKind::Unavailable, None),
        (Code::Unimplemented, &[], ErrorKind::InvalidRequest, None),
    ];
    for &(code, headers, kind, retry_after) in table {
        let server = answering(move |_| Some(with_headers(code, headers))).await;
        let service = QdrantService::from_url(format!("http://{}", server.addr)).unwrap();
        let error = service.oneshot(search()).await.unwrap_err();
        assert_eq!((error.kind(), error.code()), (kind, Some(code)), "{error}");
        assert_eq!(error.retry_after(), retry_after, "{error}");
        assert!(
            error.maybe_sent(),
            "the server answered, so it had the request"
        );
        assert_eq!(error.message(), "chosen by the test");
    }
}

#[tokio::test]
async fn a_refused_connection_is_connect_and_provably_not_sent() {
    let service = QdrantService::from_url(format!("http://{}", closed_port().await)).unwrap();
    let error = service.oneshot(search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert!(!error.maybe_sent(), "{error:?}");
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_ambiguous() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the preface, settings and the request's frames, then hang up without answering.
        let mut buffer = vec![0; 64 * 1024];
        let mut seen = 0;
        while seen < 100 {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    });
    let service = QdrantService::from_url(format!("http://{addr}")).unwrap();
    let error = service.oneshot(search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert!(
        error.maybe_sent(),
        "the request may have been read: {error:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn api_key_headers_and_timeout_travel_with_every_call_and_never_show() {
    let server = answering(|headers| {
        let key = headers.get("api-key").and_then(|v| v.to_str().ok());
        let tenant = headers.get("x-tenant").and_then(|v| v.to_str().ok());
        Some(match (key, tenant, headers.contains_key("grpc-timeout")) {
            (Some("s3cret-key"), Some("blue"), true) => Status::not_found("all present"),
            _ => Status::unauthenticated("missing something"),
        })
    })
    .await;
    let service = QdrantService::builder()
        .endpoint(format!("http://{}", server.addr))
        .api_key(Some("s3cret-key"))
        .header("x-tenant", "blue")
        .build()
        .unwrap();
    assert!(!format!("{service:?}").contains("s3cret"));
    let error = service.oneshot(search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(!format!("{error:?} {error}").contains("s3cret"));
}

#[tokio::test]
async fn the_request_timeout_bounds_a_server_that_never_answers() {
    let server = answering(|_| None).await;
    let service = QdrantService::builder()
        .endpoint(format!("http://{}", server.addr))
        .request_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), service.oneshot(search())).await;
    let error = outcome
        .expect("the service's own timeout fires first")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.maybe_sent());
}

#[tokio::test]
async fn calls_spread_round_robin_over_endpoints() {
    let first = answering(|_| Some(Status::not_found("first"))).await;
    let second = answering(|_| Some(Status::already_exists("second"))).await;
    let service = QdrantService::builder()
        .endpoint(format!("http://{}", first.addr))
        .endpoint(format!("http://{}", second.addr))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let error = service.clone().oneshot(search()).await.unwrap_err();
        seen.push(error.message().to_owned());
    }
    assert_eq!(seen, ["first", "second", "first", "second"]);
}

#[tokio::test]
async fn bad_settings_name_the_setting() {
    let error = QdrantService::builder().build().unwrap_err();
    assert_eq!(error.field(), "endpoint");
    let error = QdrantService::from_url("not a url").unwrap_err();
    assert_eq!(error.field(), "endpoint");
    let error = QdrantService::builder()
        .endpoint("http://localhost:6334")
        .api_key(Some("bad\nkey"))
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "api_key");
    assert!(!error.to_string().contains("bad\nkey"));
    let error = QdrantService::builder()
        .endpoint("http://localhost:6334")
        .header("bad header", "x")
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "header");
}

#[tokio::test]
async fn tls_connects_with_a_trusted_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let server = tonic::transport::Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem)))
        .unwrap();
    let server = serve(
        server,
        |_| Some(Status::not_found("over tls")),
        Received::default(),
    )
    .await;

    let trusted = QdrantService::builder()
        .endpoint(format!("https://localhost:{}", server.addr.port()))
        .tls(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .build()
        .unwrap();
    let error = trusted.oneshot(search()).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.message()),
        (ErrorKind::NotFound, "over tls"),
        "{error}"
    );

    // Without the certificate in its roots the client refuses the server.
    let untrusted = QdrantService::builder()
        .endpoint(format!("https://localhost:{}", server.addr.port()))
        .tls(ClientTlsConfig::new().domain_name("localhost"))
        .build()
        .unwrap();
    let error = untrusted.oneshot(search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert!(
        !error.maybe_sent(),
        "the handshake failed before anything was sent: {error:?}"
    );
}

#[tokio::test]
async fn gzip_and_message_size_options_apply_to_every_call() {
    let backend = Backend::start().await;
    let gzip = QdrantService::builder()
        .endpoint(&backend.url)
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .compression(true)
        .build()
        .unwrap();
    let name = unique("gzip");
    create_collection(&gzip, &name).await;
    send(
        &gzip,
        UpsertPointsBuilder::new(&name, sample_points()).wait(true),
    )
    .await;
    let found = send(
        &gzip,
        SearchPointsBuilder::new(&name, vec![1.0, 0.0, 0.0, 0.0], 2),
    )
    .await;
    assert!(matches!(found, VectorResponse::Search(r) if r.result.len() == 2));

    // A write over the message size cap is refused before sending, naming the sizes.
    let small = QdrantService::builder()
        .endpoint(&backend.url)
        .max_message_size(512)
        .build()
        .unwrap();
    let big: Vec<_> = (0..64_u64)
        .map(|i| PointStruct::new(i, vec![1.0, 0.5, 0.25, 0.125], Payload::new()))
        .collect();
    let error = fail(&small, UpsertPointsBuilder::new(&name, big)).await;
    assert!(
        matches!(
            error.invalid_request(),
            Some(InvalidRequest::TooLarge {
                operation: "upsert",
                max: 512,
                ..
            })
        ),
        "{error}"
    );
    assert!(!error.maybe_sent());
    send(&gzip, DeleteCollectionBuilder::new(&name)).await;
}

// ---------------------------------------------------------------------------------------------
// Deadlines and the health check.

/// The `grpc-timeout` header a call carried (`<digits><unit>`, as gRPC over HTTP/2 defines it).
fn grpc_timeout(headers: &http::HeaderMap) -> Duration {
    let value = headers.get("grpc-timeout").expect("grpc-timeout is sent");
    let value = value.to_str().unwrap();
    parse_grpc_timeout(value).unwrap_or_else(|| panic!("bad grpc-timeout {value}"))
}

/// The one message a recorded call carried (one uncompressed gRPC frame).
fn message_sent<M: prost::Message + Default>(body: &[u8]) -> M {
    assert_eq!(body[0], 0, "uncompressed");
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 5 + length, "one message");
    M::decode(&body[5..]).expect("the message type sent")
}

#[tokio::test]
async fn a_deadline_shortens_grpc_timeout_and_bounds_the_server_side_timeout() {
    let (server, received) = recording(|_| Some(Status::not_found("recorded"))).await;
    let service = |timeout: u64| {
        QdrantService::builder()
            .endpoint(format!("http://{}", server.addr))
            .request_timeout(Some(Duration::from_millis(timeout)))
            .build()
            .unwrap()
    };
    let long = service(5_000);
    let short = service(100);

    // 300 ms left, request timeout 5 s: the deadline decides, rounded up to 1 s in the field.
    let error = long
        .clone()
        .oneshot(search().with_timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    // 2.5 s left: 3 s in the field (rounded up), but a smaller value of the caller's stays.
    long.clone()
        .oneshot(search().with_timeout(Duration::from_millis(2_500)))
        .await
        .unwrap_err();
    let mut own = SearchPointsBuilder::new("docs", vec![1.0, 0.0], 3)
        .timeout(1)
        .build();
    long.clone()
        .oneshot(VectorRequest::from(own.clone()).with_timeout(Duration::from_millis(2_500)))
        .await
        .unwrap_err();
    // A request timeout of 100 ms is shorter than the 2.5 s left: it decides.
    short
        .clone()
        .oneshot(search().with_timeout(Duration::from_millis(2_500)))
        .await
        .unwrap_err();
    // No deadline: the request timeout, and the message's field untouched.
    long.clone().oneshot(search()).await.unwrap_err();

    let calls = received.calls();
    assert_eq!(calls.len(), 5);
    let sent: Vec<_> = calls
        .iter()
        .map(|(headers, body)| {
            (
                grpc_timeout(headers),
                message_sent::<SearchPoints>(body).timeout,
            )
        })
        .collect();
    let (timeout, field) = sent[0];
    assert!(
        timeout <= Duration::from_millis(300) && timeout > Duration::from_millis(200),
        "{timeout:?}"
    );
    assert_eq!(field, Some(1));
    let (timeout, field) = sent[1];
    assert!(
        timeout <= Duration::from_millis(2_500) && timeout > Duration::from_secs(2),
        "{timeout:?}"
    );
    assert_eq!(field, Some(3));
    own.timeout = Some(1);
    assert_eq!(
        message_sent::<SearchPoints>(&calls[2].1),
        own,
        "the caller's 1 s is kept"
    );
    let (timeout, field) = sent[3];
    assert!(timeout <= Duration::from_millis(100), "{timeout:?}");
    assert_eq!(field, Some(1));
    let (timeout, field) = sent[4];
    assert!(
        timeout <= Duration::from_secs(5) && timeout > Duration::from_secs(4),
        "{timeout:?}"
    );
    assert_eq!(field, None);
}

#[tokio::test]
async fn an_expired_deadline_fails_at_once_and_sends_nothing() {
    let (server, received) = recording(|_| Some(Status::not_found("recorded"))).await;
    let service = QdrantService::from_url(format!("http://{}", server.addr)).unwrap();

    let error = service
        .clone()
        .oneshot(search().with_deadline(tokio::time::Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(!error.maybe_sent(), "{error:?}");
    assert_eq!(
        (error.operation(), error.collection()),
        ("search", Some("docs"))
    );
    assert!(
        error
            .to_string()
            .contains("deadline passed before the call was sent"),
        "{error}"
    );

    // A deadline layer in front sees it first: a timeout that was not sent either.
    let error = tower::ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(service.clone())
        .oneshot(search().with_deadline(tokio::time::Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(!error.maybe_sent(), "{error:?}");

    assert!(received.calls().is_empty(), "nothing reached the server");
    // The server does record a call that is sent.
    service.oneshot(search()).await.unwrap_err();
    assert_eq!(received.calls().len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_at_the_deadline() {
    let server = answering(|_| None).await;
    let service = QdrantService::builder()
        .endpoint(format!("http://{}", server.addr))
        .request_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(2),
        service.oneshot(search().with_timeout(Duration::from_millis(300))),
    )
    .await;
    let elapsed = started.elapsed();
    let error = outcome.expect("cut at the deadline").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.maybe_sent(), "the server has it: {error:?}");
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
}

/// Polls `check` until `done` holds, for at most `bound`.
async fn until(check: &HealthCheck, bound: Duration, done: impl Fn(&HealthSnapshot) -> bool) {
    let started = std::time::Instant::now();
    loop {
        let snapshot = check.snapshot();
        if done(&snapshot) {
            return;
        }
        assert!(started.elapsed() < bound, "still {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_health_check_probes_qdrants_health_rpc() {
    let backend = Backend::start().await;
    let fast = |name: &str| {
        HealthConfig::testing()
            .with_name(name)
            .with_interval(Duration::from_millis(50))
            .with_probe_timeout(Duration::from_millis(500))
            .with_unhealthy_after(3)
    };

    let check = backend.service().health_check(fast("up")).unwrap();
    until(&check, Duration::from_secs(2), |s| {
        s.consecutive_successes >= 2
    })
    .await;
    let snapshot = check.snapshot();
    assert_eq!(snapshot.status, HealthStatus::Healthy);
    assert_eq!(
        (snapshot.consecutive_failures, snapshot.last_error),
        (0, None)
    );

    let started = std::time::Instant::now();
    let nothing = QdrantService::from_url(format!("http://{}", closed_port().await)).unwrap();
    let check = nothing.health_check(fast("down")).unwrap();
    let mut status = check.subscribe();
    tokio::time::timeout(Duration::from_secs(2), status.wait_for(|s| !s.is_healthy()))
        .await
        .expect("unhealthy within 2 s")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let snapshot = check.snapshot();
    assert_eq!(snapshot.status, HealthStatus::Unhealthy);
    assert!(snapshot.consecutive_failures >= 3, "{snapshot:?}");
    assert!(snapshot.last_error.is_some(), "{snapshot:?}");

    // A bad configuration is refused, naming the field.
    let error = nothing
        .health_check(HealthConfig::default().with_unhealthy_after(0))
        .unwrap_err();
    assert_eq!(error.field(), "unhealthy_after");
}

// ---------------------------------------------------------------------------------------------
// The big writes, sent by reference.

fn vectors_of(id: u64, first: f32) -> PointVectors {
    PointVectors {
        id: Some(id.into()),
        vectors: Some(vec![first, 0.0, 0.0, 1.0].into()),
    }
}

#[tokio::test]
async fn big_writes_arrive_whole_with_the_deadline_in_their_timeout_field() {
    let (server, received) = recording(|_| Some(Status::not_found("recorded"))).await;
    // A retry layer keeps a clone of each request: the writes are sent from the shared copy.
    let service = RetryLayer::new(RetryPolicy::default()).unwrap().layer(
        QdrantService::builder()
            .endpoint(format!("http://{}", server.addr))
            .build()
            .unwrap(),
    );
    let upsert = UpsertPointsBuilder::new("docs", sample_points())
        .wait(true)
        .build();
    let vectors = UpdatePointVectorsBuilder::new("docs", vec![vectors_of(1, 0.5)])
        .timeout(1)
        .build();
    let batch = UpdateBatchPointsBuilder::new(
        "docs",
        vec![PointsUpdateOperation::from(
            points_update_operation::Operation::Upsert(PointStructList {
                points: sample_points(),
                ..Default::default()
            }),
        )],
    )
    .build();
    let deadline = Duration::from_millis(2_500);
    for request in [
        VectorRequest::from(upsert.clone()).with_timeout(deadline),
        VectorRequest::from(vectors.clone()).with_timeout(deadline),
        VectorRequest::from(batch.clone()).with_timeout(deadline),
        VectorRequest::from(upsert.clone()),
    ] {
        let error = service.clone().oneshot(request).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    }

    let calls = received.calls();
    assert_eq!(calls.len(), 4, "one call each, none retried");
    let paths: Vec<_> = calls
        .iter()
        .map(|(headers, _)| grpc_timeout(headers) <= deadline)
        .collect();
    assert_eq!(paths, [true, true, true, false]);
    // Rounded up to 3 s; the caller's smaller 1 s kept; no deadline, no field.
    assert_eq!(
        message_sent::<UpsertPoints>(&calls[0].1),
        UpsertPoints {
            timeout: Some(3),
            ..upsert.clone()
        }
    );
    assert_eq!(message_sent::<UpdatePointVectors>(&calls[1].1), vectors);
    assert_eq!(
        message_sent::<UpdateBatchPoints>(&calls[2].1),
        UpdateBatchPoints {
            timeout: Some(3),
            ..batch
        }
    );
    assert_eq!(message_sent::<UpsertPoints>(&calls[3].1), upsert);
}

#[tokio::test]
async fn vector_writes_sent_by_reference_are_applied() {
    let backend = Backend::start().await;
    let service = backend.service();
    let name = unique("by_reference");
    create_collection(&service, &name).await;
    let retrying = RetryLayer::new(RetryPolicy::default())
        .unwrap()
        .layer(service.clone());
    let call = |request: VectorRequest| {
        let retrying = retrying.clone();
        async move {
            match retrying.oneshot(request).await {
                Ok(response) => response,
                Err(error) => panic!("{error}"),
            }
        }
    };

    let upserted = call(
        VectorRequest::from(UpsertPointsBuilder::new(&name, sample_points()).wait(true))
            .with_timeout(Duration::from_secs(5)),
    )
    .await;
    assert!(matches!(upserted, VectorResponse::Upsert(r) if r.result.is_some()));
    let updated = call(
        UpdatePointVectorsBuilder::new(&name, vec![vectors_of(2, 0.25)])
            .wait(true)
            .into(),
    )
    .await;
    assert!(matches!(updated, VectorResponse::UpdateVectors(r) if r.result.is_some()));
    let batch = UpdateBatchPointsBuilder::new(
        &name,
        vec![PointsUpdateOperation::from(
            points_update_operation::Operation::Upsert(PointStructList {
                points: vec![PointStruct::new(
                    9,
                    vec![0.0, 0.0, 0.0, 1.0],
                    Payload::new(),
                )],
                ..Default::default()
            }),
        )],
    )
    .wait(true);
    let applied = call(VectorRequest::from(batch).with_timeout(Duration::from_secs(5))).await;
    assert!(matches!(applied, VectorResponse::UpdateBatch(r) if r.result.len() == 1));

    let count = send(&service, CountPointsBuilder::new(&name).exact(true)).await;
    assert!(matches!(count, VectorResponse::Count(c) if c.result.map(|r| r.count) == Some(5)));
    // Point 2 now lies nearest to the search vector.
    let found = send(
        &service,
        SearchPointsBuilder::new(&name, vec![0.25, 0.0, 0.0, 1.0], 1),
    )
    .await;
    let VectorResponse::Search(found) = found else {
        unreachable!()
    };
    assert_eq!(ids([found.result[0].id.clone()]), ["2"]);
    send(&service, DeleteCollectionBuilder::new(&name)).await;
}
