//! qdrant-client's high-level `Qdrant` client against the server: its connection and version
//! handshake, and a round of everyday calls through its own API (not the generated clients).

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, DeletePointsBuilder, Distance, GetPointsBuilder,
    PointStruct, PointsIdsList, QueryPointsBuilder, ScrollPointsBuilder, SetPayloadPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};

use super::*;

/// The URL the target listens on.
fn url(target: &Target) -> String {
    match &target.server {
        Some(server) => server.url(),
        None => std::env::var("QDRANT_URL").expect("QDRANT_URL is set when there is no server"),
    }
}

/// `major.minor` of a version string.
fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u64>().expect("numeric version"));
    (parts.next().unwrap(), parts.next().unwrap())
}

#[tokio::test]
async fn the_high_level_client_connects_checks_the_version_and_works() {
    let target = Target::new().await;
    let url = url(&target);
    // `check_connection` fails the build unless the health check answers; the compatibility
    // check (on by default) compares the version it returns with the client's.
    let client = tokio::task::spawn_blocking(move || {
        Qdrant::from_url(&url)
            .timeout(RPC_TIMEOUT)
            .check_connection()
            .build()
    })
    .await
    .unwrap()
    .expect("the client's connection check passes");

    let health = client.health_check().await.expect("health check");
    assert_eq!(health.title, "qdrant - vector search engine");
    // The client's rule: same major version, minor versions at most one apart.
    let (major, minor) = major_minor(&health.version);
    let (client_major, client_minor) = (1, 20);
    assert_eq!(major, client_major, "{}", health.version);
    assert!(
        minor.abs_diff(client_minor) <= 1,
        "{} vs qdrant-client 1.20",
        health.version
    );

    let name = unique("client");
    client
        .create_collection(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
        )
        .await
        .expect("create collection");
    assert!(client.collection_exists(&name).await.unwrap());
    let listed = client.list_collections().await.unwrap();
    assert!(listed.collections.iter().any(|c| c.name == name));

    let points = vec![
        PointStruct::new(
            1,
            vec![1.0, 0.0],
            Payload::try_from(json!({"kind": "a"})).unwrap(),
        ),
        PointStruct::new(
            2,
            vec![0.0, 1.0],
            Payload::try_from(json!({"kind": "b"})).unwrap(),
        ),
        PointStruct::new(
            3,
            vec![0.7, 0.7],
            Payload::try_from(json!({"kind": "a"})).unwrap(),
        ),
    ];
    client
        .upsert_points(UpsertPointsBuilder::new(&name, points).wait(true))
        .await
        .expect("upsert");

    let hits = client
        .query(
            QueryPointsBuilder::new(&name)
                .query(vec![1.0, 0.1])
                .limit(2),
        )
        .await
        .expect("query");
    let ids: Vec<_> = hits.result.iter().map(|p| p.id.clone().unwrap()).collect();
    assert_eq!(ids, vec![1.into(), 3.into()]);

    let counted = client
        .count(
            CountPointsBuilder::new(&name)
                .exact(true)
                .filter(Filter::must([Condition::matches("kind", "a".to_owned())])),
        )
        .await
        .unwrap();
    assert_eq!(counted.result.unwrap().count, 2);

    client
        .set_payload(
            SetPayloadPointsBuilder::new(&name, Payload::try_from(json!({"seen": true})).unwrap())
                .points_selector(PointsIdsList {
                    ids: vec![2.into()],
                })
                .wait(true),
        )
        .await
        .unwrap();
    let got = client
        .get_points(GetPointsBuilder::new(&name, vec![2.into()]).with_payload(true))
        .await
        .unwrap();
    assert_eq!(got.result.len(), 1);
    assert!(got.result[0].payload.contains_key("seen"));

    client
        .delete_points(
            DeletePointsBuilder::new(&name)
                .points(PointsIdsList {
                    ids: vec![1.into()],
                })
                .wait(true),
        )
        .await
        .unwrap();
    let scrolled = client
        .scroll(ScrollPointsBuilder::new(&name).limit(10))
        .await
        .unwrap();
    assert_eq!(scrolled.result.len(), 2);

    let info = client.collection_info(&name).await.unwrap();
    assert_eq!(info.result.unwrap().points_count, Some(2));

    // A missing collection is the client's own error carrying Qdrant's status.
    let error = client.collection_info(unique("missing")).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("doesn't exist") || text.contains("Not found"),
        "{text}"
    );

    client
        .delete_collection(&name)
        .await
        .expect("delete collection");
    assert!(!client.collection_exists(&name).await.unwrap());
}
