//! What the stack tells you while it works: each call as a span (OpenTelemetry's database
//! attribute names, so an OTLP exporter such as `tracing-opentelemetry` shows client spans
//! without configuration) printed to the console here, and the metrics as Prometheus scrapes
//! them.
//!
//! ```text
//! cargo run --example telemetry
//! ```
//!
//! Runs against the Qdrant at `QDRANT_URL` (with `QDRANT_API_KEY` if needed), or the embedded
//! testkit server when `QDRANT_URL` is unset.
//!
//! To export the same spans over OTLP instead, replace the console subscriber with
//! `tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer))`:
//! the span named `qdrant` carries `otel.name` (`"search docs"`), `otel.kind = "client"`,
//! `db.system.name`, `db.operation.name`, `db.collection.name`, and on failure `error.type`
//! and `otel.status_code = "ERROR"`; each attempt is a child span.

use qdrant_tower::config::StackConfig;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct, SearchPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, Profile, QdrantStack};
use qdrant_tower_testkit::TestServer;
use tracing_subscriber::fmt::format::FmtSpan;

const COLLECTION: &str = "qdrant_tower_telemetry";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans to the console, each printed when it closes with its fields and timing.
    tracing_subscriber::fmt()
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_ansi(false)
        .init();
    // The metrics recorder first: the stack registers its handles when it is built.
    let prometheus = qdrant_tower::observe::prometheus()?;

    let (url, _embedded) = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = TestServer::start().await?;
            println!("QDRANT_URL is unset: started the embedded testkit server");
            (server.url(), Some(server))
        }
    };
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![url];
    config.metrics.collection_labels = 20; // label by collection, for the first 20
    let stack = QdrantStack::builder()
        .config(config)
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .build()?;
    let client = stack.client();

    let _ = client
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await;
    client
        .create_collection(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
        )
        .await?;
    client
        .upsert(
            UpsertPointsBuilder::new(
                COLLECTION,
                vec![PointStruct::new(1, vec![1.0, 0.0], Payload::new())],
            )
            .wait(true),
        )
        .await?;
    for _ in 0..3 {
        client
            .search(SearchPointsBuilder::new(COLLECTION, vec![1.0, 0.0], 1))
            .await?;
    }
    let missing = client
        .search(SearchPointsBuilder::new(
            "no_such_collection",
            vec![1.0, 0.0],
            1,
        ))
        .await
        .expect_err("no such collection");
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    prometheus.run_upkeep();
    let text = prometheus.render();
    println!("\nWhat a Prometheus scrape sees (qdrant_* series):");
    for line in text.lines().filter(|l| {
        l.starts_with("qdrant_requests_total")
            || l.starts_with("qdrant_request_duration_seconds_count")
    }) {
        println!("  {line}");
    }
    assert!(text.contains(&format!(
        "qdrant_requests_total{{operation=\"search\",outcome=\"ok\",collection=\"{COLLECTION}\"}} 3"
    )));
    client
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await?;
    Ok(())
}
