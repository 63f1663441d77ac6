//! A gRPC service of your own (tonic) that searches Qdrant through the ready stack and passes
//! its caller's deadline on: the `grpc-timeout` a caller sends becomes the deadline of the
//! Qdrant call (retries, backoffs and Qdrant's own work included), less a small margin to
//! answer in, so a caller who gives up after 300 ms is answered `DEADLINE_EXCEEDED` at about
//! 300 ms with the reason — and Qdrant is told too, instead of working on for nobody.
//!
//! ```text
//! cargo run --example tonic
//! ```
//!
//! Runs against the Qdrant at `QDRANT_URL` (with `QDRANT_API_KEY` if needed), or the embedded
//! testkit server when `QDRANT_URL` is unset. The demo puts the testkit's chaos proxy between
//! the stack and Qdrant to make Qdrant slow (1 s of latency on its answers).
//!
//! The service's messages are plain `prost` structs and its server is written out by hand,
//! as tonic's code generator would write it, so that the example needs no `protoc`; with a
//! `.proto` file and `tonic-build` the generated server calls the same handler.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct, SearchPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{
    Client, ErrorKind, Payload, Profile, QdrantStack, StackService, VectorError, VectorRequest,
    VectorResponse,
};
use qdrant_tower_testkit::chaos::Direction;
use qdrant_tower_testkit::{ChaosProxy, TestServer};
use tonic::codegen::http;
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

const COLLECTION: &str = "qdrant_tower_tonic";
const SEARCH_PATH: &str = "/docs.Docs/Search";

/// `docs.Docs/Search`'s request: a vector and how many hits.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchRequest {
    #[prost(float, repeated, tag = "1")]
    pub vector: Vec<f32>,
    #[prost(uint64, tag = "2")]
    pub limit: u64,
}

/// Its answer: the hits, best first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchReply {
    #[prost(message, repeated, tag = "1")]
    pub hits: Vec<Hit>,
}

/// One hit.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hit {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(float, tag = "2")]
    pub score: f32,
}

/// How much of the caller's time the handler keeps to answer in: a tenth of it, at least
/// 20 ms and at most 100 ms. Without it, tonic's own deadlines — the server's and the caller's
/// channel's, both at the caller's timeout and both answering `CANCELLED "Timeout expired"` —
/// could beat our clearer answer. 10 ms was not enough: on a loaded 2-core CI machine the answer
/// once arrived after the caller's own timer (measured slack on an idle one: ~7 ms of 300).
fn answer_margin(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(20), Duration::from_millis(100))
}

/// The handler: what a generated `Docs` trait's `search` would hold.
async fn search(
    qdrant: &Client<StackService>,
    request: Request<SearchRequest>,
) -> Result<Response<SearchReply>, Status> {
    // The caller's deadline, if it sent one (`grpc-timeout`), minus the margin.
    let deadline = caller_timeout(&request).map(|timeout| {
        tokio::time::Instant::now() + timeout.saturating_sub(answer_margin(timeout))
    });
    let SearchRequest { vector, limit } = request.into_inner();
    let mut call = VectorRequest::from(SearchPointsBuilder::new(COLLECTION, vector, limit));
    if let Some(deadline) = deadline {
        // The stack's deadline layer keeps the earlier of this and its own.
        call = call.with_deadline(deadline);
    }
    match qdrant.call(call).await.map_err(status)? {
        VectorResponse::Search(found) => Ok(Response::new(SearchReply {
            hits: found
                .result
                .iter()
                .map(|hit| Hit {
                    id: match hit.id.as_ref().and_then(|id| id.point_id_options.clone()) {
                        Some(qdrant_tower::qdrant::point_id::PointIdOptions::Num(n)) => n,
                        _ => 0,
                    },
                    score: hit.score,
                })
                .collect(),
        })),
        other => Err(Status::internal(format!(
            "unexpected answer: {}",
            other.operation()
        ))),
    }
}

/// The `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n), if valid.
fn caller_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A `VectorError` as the gRPC status its kind calls for, with the reason.
fn status(error: VectorError) -> Status {
    let code = match error.kind() {
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::RateLimited | ErrorKind::InsufficientStorage => Code::ResourceExhausted,
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => Code::Internal,
        _ => Code::Unavailable,
    };
    Status::new(code, error.to_string())
}

/// The server, as `tonic-build` would generate it for `service Docs { rpc Search(...) }`.
#[derive(Clone)]
struct DocsServer {
    qdrant: Arc<Client<StackService>>,
}

impl NamedService for DocsServer {
    const NAME: &'static str = "docs.Docs";
}

impl tower::Service<http::Request<tonic::body::Body>> for DocsServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        struct Search(Arc<Client<StackService>>);
        impl UnaryService<SearchRequest> for Search {
            type Response = SearchReply;
            type Future = BoxFuture<'static, Result<Response<SearchReply>, Status>>;
            fn call(&mut self, request: Request<SearchRequest>) -> Self::Future {
                let qdrant = Arc::clone(&self.0);
                Box::pin(async move { search(&qdrant, request).await })
            }
        }
        let qdrant = Arc::clone(&self.qdrant);
        Box::pin(async move {
            if request.uri().path() != SEARCH_PATH {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Search(qdrant), request).await)
        })
    }
}

/// The caller's side: `docs.Docs/Search` with a timeout (sent as `grpc-timeout`).
async fn call_search(
    channel: tonic::transport::Channel,
    vector: Vec<f32>,
    timeout: Duration,
) -> Result<SearchReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let mut request = Request::new(SearchRequest { vector, limit: 2 });
    request.set_timeout(timeout);
    let path = http::uri::PathAndQuery::from_static(SEARCH_PATH);
    let reply = grpc
        .unary(request, path, tonic_prost::ProstCodec::default())
        .await?;
    Ok(reply.into_inner())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (upstream, embedded) = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = TestServer::start().await?;
            println!("QDRANT_URL is unset: started the embedded testkit server");
            (server.url(), Some(server))
        }
    };
    // The network to Qdrant, which the demo will make slow.
    let network = ChaosProxy::start(
        upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()?,
    )
    .await?;
    let stack = QdrantStack::builder()
        .endpoint(network.url())
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .profile(Profile::Testing)
        .build()?;
    let qdrant = stack.client();
    let _ = qdrant
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await;
    qdrant
        .create_collection(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Euclid)),
        )
        .await?;
    let points = (1..=3u64)
        .map(|id| PointStruct::new(id, vec![id as f32, 0.0], Payload::new()))
        .collect::<Vec<_>>();
    qdrant
        .upsert(UpsertPointsBuilder::new(COLLECTION, points).wait(true))
        .await?;

    // Our gRPC service, on a loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .add_service(DocsServer {
            qdrant: Arc::new(qdrant.clone()),
        })
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    let serving = tokio::spawn(server);
    println!("docs.Docs on http://{addr}");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let reply = call_search(channel.clone(), vec![2.1, 0.0], Duration::from_secs(2)).await?;
    println!("Search (2 s to answer) -> {:?}", reply.hits);
    assert_eq!(reply.hits.first().map(|hit| hit.id), Some(2));

    // Qdrant turns slow: every answer takes a second more. A caller allowing 300 ms gets
    // DEADLINE_EXCEEDED, with the reason, after about 300 ms, not a second.
    network.latency(
        Direction::Downstream,
        Duration::from_secs(1),
        Duration::ZERO,
    );
    let started = Instant::now();
    let error = call_search(channel.clone(), vec![2.1, 0.0], Duration::from_millis(300))
        .await
        .expect_err("Qdrant is too slow for this caller");
    let took = started.elapsed();
    println!(
        "Search (300 ms to answer) while Qdrant is slow -> {:?} after {took:?}: {}",
        error.code(),
        error.message()
    );
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(
        took < Duration::from_millis(900),
        "answered at the caller's deadline"
    );
    if let Some(server) = &embedded {
        // The deadline travelled on to Qdrant as the search's own grpc-timeout.
        let told = server
            .calls()
            .matching(|call| call.rpc() == qdrant_tower_testkit::faults::Rpc::Search)
            .last()
            .and_then(|call| call.grpc_timeout());
        println!("Qdrant was told: grpc-timeout {told:?}");
        assert!(told.is_some_and(|t| t <= Duration::from_millis(300)));
    }

    network.clear();
    stack
        .client()
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await?;
    serving.abort();
    Ok(())
}
