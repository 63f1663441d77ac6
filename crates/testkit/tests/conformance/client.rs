//! qdrant-client's high-level `Qdrant` client against the server: its connection and version
//! handshake, and a round of everyday calls through its own API (not the generated clients).
//! Against a real Qdrant it sends `QDRANT_API_KEY`, as the generated clients do.

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
    let mut parts = version.split('.').map(|part| {
        part.parse::<u64>()
            .unwrap_or_else(|_| panic!("version {version:?} is not numeric"))
    });
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("version {version:?}"))
    };
    (next(), next())
}

/// qdrant-client 1.20's compatibility rule (`version_check::is_compatible`, private to it): the
/// same major version, minor versions at most one apart.
fn qdrant_client_accepts(server_version: &str) -> bool {
    let (major, minor) = major_minor(server_version);
    major == 1 && minor.abs_diff(20) <= 1
}

/// A high-level client for the target, with its API key; `check_compatibility` as asked.
async fn high_level_client(target: &Target, check_compatibility: bool) -> Qdrant {
    let url = url(target);
    // A testkit server takes no key.
    let api_key = if target.is_testkit() {
        None
    } else {
        ApiKey::env_string()
    };
    tokio::task::spawn_blocking(move || {
        let mut builder = Qdrant::from_url(&url)
            .api_key(api_key)
            .timeout(RPC_TIMEOUT)
            .check_connection();
        if !check_compatibility {
            builder = builder.skip_compatibility_check();
        }
        builder.build()
    })
    .await
    .unwrap()
    .expect("the client's connection check passes")
}

#[tokio::test]
async fn the_version_check_accepts_the_testkit_and_only_warns_about_other_versions() {
    let target = Target::new().await;
    // With the check on (the default), the client asks the server's version as it is built and,
    // when the rule fails, prints a warning and connects anyway: building never fails on it.
    let client = high_level_client(&target, true).await;
    let health = client.health_check().await.expect("health check");
    assert_eq!(health.title, "qdrant - vector search engine");
    assert_eq!(major_minor(&health.version).0, 1, "{}", health.version);
    if target.is_testkit() {
        // The testkit reports a version the client accepts, so it prints no warning.
        assert!(
            qdrant_client_accepts(&health.version),
            "{} vs qdrant-client 1.20",
            health.version
        );
    }
}

#[tokio::test]
async fn the_high_level_client_works_through_its_own_api() {
    let target = Target::new().await;
    // A real server may be more than one minor version away from the client (1.18 vs 1.20):
    // the check, which only warns, is left to the test above.
    let client = high_level_client(&target, target.is_testkit()).await;

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
