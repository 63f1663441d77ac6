//! An HTTP search/upsert service on axum, holding the typed client of the ready stack in its
//! state, and what it answers while Qdrant is unreachable: a quick `503` with the reason, not a
//! hang.
//!
//! ```text
//! cargo run --example axum            # the demo below, then exits
//! cargo run --example axum -- serve   # keeps serving on 127.0.0.1:3000 (or the address after `serve`)
//! ```
//!
//! Runs against the Qdrant at `QDRANT_URL` (with `QDRANT_API_KEY` if needed), or the embedded
//! testkit server when `QDRANT_URL` is unset. The demo puts the testkit's chaos proxy between
//! the stack and Qdrant so it can cut the network: searches then fail fast (connection
//! refused), the breaker opens after 5 failures and later calls are rejected at once with a
//! `Retry-After`; when the network is back, calls succeed again.
//!
//! Errors map to HTTP by their `ErrorKind`: unreachable, open breaker, unhealthy, timeout →
//! 503 (with `Retry-After` when known); rate limited → 429; bad input → 400; missing collection
//! → 404.
//!
//! The app also mounts the stack's admin router at `/admin`: the status page (`GET /admin`),
//! readiness (`/admin/health`), alerts, Prometheus metrics and breaker controls; changes need
//! the bearer token in `ADMIN_TOKEN` (the demo makes one up when it is unset).

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use qdrant_tower::admin::AdminConfig;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct, SearchPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{Client, ErrorKind, Payload, Profile, QdrantStack, StackService, VectorError};
use qdrant_tower_testkit::{ChaosProxy, TestServer};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const COLLECTION: &str = "qdrant_tower_axum";

/// What every handler gets: the typed client (a clone of the stack's service: cheap, shared
/// breaker and health check).
#[derive(Clone)]
struct AppState {
    qdrant: Client<StackService>,
}

fn app(qdrant: Client<StackService>) -> Router {
    Router::new()
        .route("/search", get(search))
        .route("/points", post(upsert))
        .with_state(AppState { qdrant })
}

#[derive(Deserialize)]
struct SearchParams {
    x: f32,
    y: f32,
    #[serde(default = "three")]
    limit: u64,
}

fn three() -> u64 {
    3
}

async fn search(
    State(state): State<AppState>,
    Query(params): Query<SearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let found = state
        .qdrant
        .search(
            SearchPointsBuilder::new(COLLECTION, vec![params.x, params.y], params.limit)
                .with_payload(true),
        )
        .await?;
    let hits: Vec<_> = found
        .result
        .iter()
        .map(|hit| {
            let name = hit.payload.get("name").and_then(|v| v.as_str()).cloned();
            json!({ "name": name, "score": hit.score })
        })
        .collect();
    Ok(Json(json!({ "hits": hits })))
}

#[derive(Deserialize)]
struct NewPoint {
    id: u64,
    vector: Vec<f32>,
    name: String,
}

async fn upsert(
    State(state): State<AppState>,
    Json(points): Json<Vec<NewPoint>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let count = points.len();
    let points = points
        .into_iter()
        .map(|p| {
            let payload = Payload::try_from(json!({ "name": p.name })).expect("an object");
            PointStruct::new(p.id, p.vector, payload)
        })
        .collect::<Vec<_>>();
    state
        .qdrant
        .upsert(UpsertPointsBuilder::new(COLLECTION, points).wait(true))
        .await?;
    Ok(Json(json!({ "upserted": count })))
}

/// A `VectorError` as an HTTP answer: the status its kind calls for, and the reason.
struct ApiError(VectorError);

impl From<VectorError> for ApiError {
    fn from(error: VectorError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let status = match error.kind() {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = Json(json!({
            "error": error.to_string(),
            "kind": error.kind().as_str(),
            "maybe_applied": error.maybe_sent(),
        }));
        let mut response = (status, body).into_response();
        if let Some(after) = error.retry_after() {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits"),
            );
        }
        response
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().nth(1).as_deref() == Some("serve");
    // The metrics recorder before the stack: it registers its handles when it is built.
    let prometheus = qdrant_tower::observe::prometheus()?;
    let token = std::env::var("ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let (upstream, _embedded) = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = TestServer::start().await?;
            println!("QDRANT_URL is unset: started the embedded testkit server");
            (server.url(), Some(server))
        }
    };
    // The network between the service and Qdrant, which the demo will cut.
    let upstream_addr = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let network = ChaosProxy::start(upstream_addr).await?;

    let stack = QdrantStack::builder()
        .endpoint(network.url())
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .profile(Profile::Testing)
        .configure_service(|s| s.connect_timeout(Duration::from_millis(500)))
        .build()?;
    let client = stack.client();
    let _ = client
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await;
    client
        .create_collection(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Euclid)),
        )
        .await?;

    let address = match (serve, std::env::args().nth(2)) {
        (true, Some(address)) => address,
        (true, None) => "127.0.0.1:3000".to_owned(),
        (false, _) => "127.0.0.1:0".to_owned(),
    };
    let listener = TcpListener::bind(address).await?;
    let addr = listener.local_addr()?;
    println!("HTTP service on http://{addr}");
    let admin = stack.admin(
        AdminConfig::new()
            .token(Some(token.clone()))
            .prometheus(prometheus),
    );
    let router = app(client).nest("/admin", admin);
    let http = tokio::spawn(async move { axum::serve(listener, router).await });
    println!("status page on http://{addr}/admin");
    if serve {
        return Ok(http.await??);
    }

    let (status, body) = request(
        addr,
        "POST",
        "/points",
        r#"[{"id":1,"vector":[1,0],"name":"north"},{"id":2,"vector":[0,1],"name":"east"}]"#,
    )
    .await?;
    println!("POST /points -> {status} {body}");
    assert_eq!(status, 200);
    let (status, body) = request(addr, "GET", "/search?x=0.9&y=0.1&limit=1", "").await?;
    println!("GET /search -> {status} {body}");
    assert_eq!(status, 200);
    assert!(body.contains("north"));

    // The network to Qdrant goes down: no new connection, the open one cut.
    network.refuse(true).await?;
    network.reset_all().await;
    for _ in 0..7 {
        let started = Instant::now();
        let (status, body) = request(addr, "GET", "/search?x=0.9&y=0.1", "").await?;
        println!(
            "during the outage: {status} in {:?}: {body}",
            started.elapsed()
        );
        assert_eq!(status, 503, "unavailable, with a reason");
        assert!(started.elapsed() < Duration::from_secs(6), "never a hang");
    }
    println!("breaker: {:?}", stack.breaker().state());
    // What the on-call engineer sees: not ready, with the reason, and the open breaker.
    let (status, body) = request(addr, "GET", "/admin/health", "").await?;
    println!("GET /admin/health -> {status} {body}");
    assert_eq!(status, 503);
    assert!(body.contains("breaker `qdrant` is open"));
    let (status, body) = request(addr, "GET", "/admin/breakers/qdrant", "").await?;
    println!("GET /admin/breakers/qdrant -> {status} {body}");

    // Back: the breaker is reset by hand here, through the admin API (in production its open
    // wait, or the health check seeing Qdrant again, moves it to half-open).
    network.refuse(false).await?;
    let (status, _) = request(addr, "POST", "/admin/breakers/qdrant/reset", "").await?;
    assert_eq!(status, 401, "changes need the token");
    let (status, body) = request_with(
        addr,
        "POST",
        "/admin/breakers/qdrant/reset",
        "",
        Some(&token),
    )
    .await?;
    println!("POST /admin/breakers/qdrant/reset (with the token) -> {status} {body}");
    assert_eq!(status, 200);
    // Is Qdrant answering again? Three health RPCs straight to it, with their latency.
    let (status, body) = request_with(
        addr,
        "POST",
        "/admin/test-service",
        r#"{"iterations": 3}"#,
        Some(&token),
    )
    .await?;
    println!("POST /admin/test-service -> {status} {body}");
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\":3"), "three good probes");
    let (status, body) = request(addr, "GET", "/search?x=0.1&y=0.9&limit=1", "").await?;
    println!("after the outage: {status} {body}");
    assert_eq!(status, 200);
    assert!(body.contains("east"));

    stack
        .client()
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await?;
    http.abort();
    Ok(())
}

/// One HTTP/1.1 request on its own connection: the status code and the body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    request_with(addr, method, path, body, None).await
}

/// [`request`] with a bearer token.
async fn request_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| std::io::Error::other("no HTTP answer within 30 s"))?
}
