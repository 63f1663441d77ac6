//! Telemetry asserted, not assumed: the stack's metrics as Prometheus renders them (the
//! process's recorder, installed by `observe::prometheus`), and its spans as a subscriber sees
//! them — against the embedded server.

use std::time::Duration;

use qdrant_tower::config::StackConfig;
use qdrant_tower::qdrant::SearchPointsBuilder;
use qdrant_tower::{ErrorKind, Profile, QdrantStack};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};

use crate::backend::collection_with_a_point;
use crate::capture::Captured;

/// A stack named `name` with collection labels, retrying UNAVAILABLE 3 times, its breaker
/// opening after 6 failed attempts in a row.
fn stack(server: &TestServer, name: &str) -> QdrantStack {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.name = name.to_owned();
    config.endpoints = vec![server.url()];
    config.retry.unavailable.attempts = 3;
    config.retry.time_scale = 0.01;
    config.breaker.failure_threshold = 6;
    config.metrics.collection_labels = 10;
    QdrantStack::builder().config(config).build().unwrap()
}

/// The value of the sample `name{labels…}` (labels in any order), if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let wanted = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse().ok()).flatten()
        })
}

#[tokio::test]
async fn metrics_count_calls_attempts_retries_breaker_and_health_by_label() {
    let prometheus = qdrant_tower::observe::prometheus().expect("the test binary's recorder");
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "obs_metrics");
    let client = stack.client();
    collection_with_a_point(&client, "obs_m").await;

    for _ in 0..3 {
        client
            .search(SearchPointsBuilder::new("obs_m", vec![1.0, 0.0], 1))
            .await
            .unwrap();
    }
    // Two UNAVAILABLE then an answer: one call, three attempts, two retries.
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(2),
    );
    client
        .search(SearchPointsBuilder::new("obs_m", vec![1.0, 0.0], 1))
        .await
        .unwrap();
    // A missing collection: not retried, not a breaker failure.
    let error = client
        .search(SearchPointsBuilder::new("obs_missing", vec![1.0, 0.0], 1))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    // Two failed calls (3 attempts each) open the breaker (6 in a row); the next is rejected.
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Count));
    for _ in 0..2 {
        client
            .count(qdrant_tower::qdrant::CountPointsBuilder::new("obs_m"))
            .await
            .unwrap_err();
    }
    let rejected = client
        .count(qdrant_tower::qdrant::CountPointsBuilder::new("obs_m"))
        .await
        .unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::CircuitOpen);
    tokio::time::sleep(Duration::from_millis(50)).await; // the first health probe has run

    let text = {
        prometheus.run_upkeep();
        prometheus.render()
    };
    let m = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
    };
    let search_ok = [
        ("operation", "search"),
        ("outcome", "ok"),
        ("collection", "obs_m"),
    ];
    assert_eq!(m("qdrant_requests_total", &search_ok), 4.0);
    assert_eq!(m("qdrant_request_duration_seconds_count", &search_ok), 4.0);
    assert_eq!(
        m(
            "qdrant_attempts_total",
            &[
                ("operation", "search"),
                ("outcome", "unavailable"),
                ("collection", "obs_m")
            ]
        ),
        2.0
    );
    assert_eq!(m("qdrant_attempts_total", &search_ok), 4.0);
    assert_eq!(
        m(
            "qdrant_requests_total",
            &[
                ("operation", "search"),
                ("outcome", "not_found"),
                ("collection", "obs_missing")
            ]
        ),
        1.0
    );
    let count = |outcome| {
        [
            ("operation", "count"),
            ("outcome", outcome),
            ("collection", "obs_m"),
        ]
    };
    assert_eq!(m("qdrant_requests_total", &count("unavailable")), 2.0);
    assert_eq!(m("qdrant_requests_total", &count("circuit_open")), 1.0);
    // The breaker's own series, by its name.
    assert_eq!(
        m(
            "circuit_breaker_state",
            &[("breaker", "obs_metrics"), ("state", "open")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "circuit_breaker_rejections_total",
            &[("breaker", "obs_metrics")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "circuit_breaker_transitions_total",
            &[("breaker", "obs_metrics"), ("to", "open")]
        ),
        1.0
    );
    // Retries by kind, attempts per call, health, connections.
    assert!(m("retries_total", &[("kind", "unavailable")]) >= 2.0);
    assert!(m("retry_attempts_per_call_count", &[]) >= 1.0);
    assert_eq!(m("health_status", &[("name", "obs_metrics")]), 1.0);
    assert!(
        m(
            "health_probe_duration_seconds_count",
            &[("name", "obs_metrics")]
        ) >= 1.0
    );
    assert_eq!(m("qdrant_connections", &[("endpoint", &server.url())]), 1.0);
    assert!(text.contains("# HELP qdrant_requests_total"), "described");
    assert!(
        text.contains("qdrant_request_duration_seconds_bucket{"),
        "latency is a histogram with buckets"
    );
}

#[tokio::test]
async fn collection_labels_are_capped() {
    qdrant_tower::observe::prometheus().unwrap();
    let server = TestServer::start().await.unwrap();
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![server.url()];
    config.metrics.collection_labels = 2;
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();
    for name in ["cap_a", "cap_b", "cap_c", "cap_d"] {
        let _ = client
            .search(SearchPointsBuilder::new(name, vec![1.0], 1))
            .await;
    }
    let text = qdrant_tower::observe::prometheus().unwrap().render();
    for name in ["cap_a", "cap_b"] {
        assert!(text.contains(&format!("collection=\"{name}\"")), "{name}");
    }
    for name in ["cap_c", "cap_d"] {
        assert!(
            !text.contains(&format!("collection=\"{name}\"")),
            "{name} past the cap"
        );
    }
    assert!(text.contains("collection=\"_other\""));
}

#[tokio::test]
async fn each_call_is_a_span_with_otel_attributes_and_an_attempt_span_per_try() {
    let captured = Captured::global();
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "obs_spans");
    let client = stack.client();
    collection_with_a_point(&client, "obs_s").await;

    client
        .search(SearchPointsBuilder::new("obs_s", vec![1.0, 0.0], 1))
        .await
        .unwrap();
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
    client
        .with_timeout(Duration::from_secs(3))
        .search(SearchPointsBuilder::new("obs_s", vec![1.0, 0.0], 1))
        .await
        .unwrap_err();

    let calls: Vec<_> = captured
        .spans("qdrant")
        .into_iter()
        .filter(|s| {
            s.field("db.operation.name") == Some("search")
                && s.field("db.collection.name") == Some("obs_s")
        })
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let ok = &calls[0];
    assert_eq!(ok.field("db.system.name"), Some("qdrant"));
    assert_eq!(ok.field("db.collection.name"), Some("obs_s"));
    assert_eq!(ok.field("otel.name"), Some("search obs_s"));
    assert_eq!(ok.field("otel.kind"), Some("client"));
    assert_eq!(ok.field("qdrant_tower.outcome"), Some("ok"));
    assert_eq!(ok.field("error.type"), None);
    let failed = &calls[1];
    assert_eq!(failed.field("qdrant_tower.outcome"), Some("unavailable"));
    assert_eq!(failed.field("error.type"), Some("unavailable"));
    assert_eq!(failed.field("otel.status_code"), Some("ERROR"));
    assert_eq!(failed.field("qdrant_tower.attempts"), Some("3"));
    let deadline: u64 = failed
        .field("qdrant_tower.deadline_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!((2_900..=3_000).contains(&deadline), "{deadline}");

    let attempts: Vec<_> = captured
        .spans("attempt")
        .into_iter()
        .filter(|s| {
            s.field("db.collection.name") == Some("obs_s")
                && s.field("db.operation.name") == Some("search")
        })
        .collect();
    assert_eq!(
        attempts.len(),
        1 + 3,
        "one for the first call, three for the second"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.parent.as_deref() == Some("qdrant"))
    );
    let failed_attempts = attempts
        .iter()
        .filter(|a| a.field("error.type") == Some("unavailable"))
        .count();
    assert_eq!(failed_attempts, 3);
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.field("attempt").unwrap())
            .collect::<Vec<_>>(),
        ["1", "1", "2", "3"]
    );
}
