//! Quickstart: create a collection, upsert points, search with a filter, print the hits —
//! through the ready-made resilience stack (`QdrantStack`: deadline → retry → health gate →
//! circuit breaker → attempt timeout → `QdrantService`) and its typed client.
//!
//! Runs against the Qdrant at `QDRANT_URL` (gRPC port, e.g. `http://localhost:6334`, with
//! `QDRANT_API_KEY` if it needs one), or, when `QDRANT_URL` is unset, against an embedded
//! Qdrant-compatible server (the testkit's, on Qdrant's own engine) started in-process.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use qdrant_tower::qdrant::{
    Condition, CreateCollectionBuilder, DeleteCollectionBuilder, Distance, Filter, PointStruct,
    SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, Profile, QdrantStack};
use qdrant_tower_testkit::TestServer;
use serde_json::json;

const COLLECTION: &str = "qdrant_tower_quickstart";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A real Qdrant if one is named, else the embedded server (kept alive until main returns).
    let (url, _embedded) = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = TestServer::start().await?;
            println!("QDRANT_URL is unset: started the embedded testkit server");
            (server.url(), Some(server))
        }
    };
    println!("Qdrant at {url}");

    // Every call: 10 s in all, transient failures retried by kind within a budget, rejected at
    // once while the health check (Qdrant's health RPC every 15 s) or the breaker says Qdrant
    // is down, each attempt bounded by 5 s; the time left travels to Qdrant with the request.
    let stack = QdrantStack::builder()
        .endpoint(&url)
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .profile(Profile::Production)
        .build()?;
    let client = stack.client();

    // Start from a clean slate: a collection left by an earlier run is dropped.
    match client
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await
    {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    client
        .create_collection(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await?;

    let cities = [
        (1, "Berlin", "DE", [0.9, 0.1, 0.1, 0.0]),
        (2, "Hamburg", "DE", [0.8, 0.2, 0.1, 0.1]),
        (3, "Munich", "DE", [0.7, 0.1, 0.3, 0.0]),
        (4, "Paris", "FR", [0.9, 0.1, 0.0, 0.1]),
        (5, "Lyon", "FR", [0.6, 0.3, 0.1, 0.2]),
        (6, "Vienna", "AT", [0.8, 0.1, 0.2, 0.1]),
    ];
    let mut points = Vec::new();
    for (id, city, country, vector) in cities {
        let payload = Payload::try_from(json!({ "city": city, "country": country }))?;
        points.push(PointStruct::new(id, vector.to_vec(), payload));
    }
    client
        .upsert(UpsertPointsBuilder::new(COLLECTION, points).wait(true))
        .await?;
    println!("upserted {} points into `{COLLECTION}`", cities.len());

    let found = client
        .search(
            SearchPointsBuilder::new(COLLECTION, vec![0.9, 0.1, 0.05, 0.05], 3)
                .filter(Filter::must([Condition::matches(
                    "country",
                    "DE".to_string(),
                )]))
                .with_payload(true),
        )
        .await?;
    println!("nearest German cities:");
    for hit in &found.result {
        let city = hit.payload.get("city").and_then(|v| v.as_str());
        let city = city.map_or("?", String::as_str);
        println!("  {city:<10} score {:.4}", hit.score);
    }

    // An error is typed and names what went wrong.
    let error = client
        .search(SearchPointsBuilder::new(
            "no_such_collection",
            vec![0.0; 4],
            1,
        ))
        .await
        .expect_err("the collection does not exist");
    println!(
        "a search on a missing collection fails as {}: {error}",
        error.kind()
    );

    client
        .delete_collection(DeleteCollectionBuilder::new(COLLECTION))
        .await?;
    println!(
        "health: {}, breaker: {:?} after {} calls",
        stack.health().status(),
        stack.breaker().state(),
        stack.breaker().snapshot().calls
    );
    Ok(())
}
