//! The admin API and status page over real HTTP on loopback: every route, the token rules
//! (missing, wrong, none configured, protected reads), and what an on-call engineer sees while
//! a breaker is open — against the embedded server.

use std::net::SocketAddr;
use std::time::Duration;

use qdrant_tower::admin::AdminConfig;
use qdrant_tower::config::StackConfig;
use qdrant_tower::layers::BreakerKey;
use qdrant_tower::qdrant::{CreateCollectionBuilder, Distance, VectorParamsBuilder};
use qdrant_tower::{Profile, QdrantStack};
use qdrant_tower_testkit::TestServer;

use crate::capture::{Captured, http};

const TOKEN: &str = "adm1n-t0ken-for-tests";

fn stack(server: &TestServer, name: &str) -> QdrantStack {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.name = name.to_owned();
    config.endpoints = vec![server.url()];
    QdrantStack::builder().config(config).build().unwrap()
}

/// Serves `router` on a loopback port for the rest of the test.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn breakers_health_and_alerts_over_http_with_the_token_rules() {
    let captured = Captured::global();
    // The recorder first: a stack registers its metric handles when it is built.
    let prometheus = qdrant_tower::observe::prometheus().unwrap();
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "adm");
    let addr = serve(
        stack.admin(
            AdminConfig::new()
                .token(Some(TOKEN))
                .open_alert_after(Duration::ZERO)
                .prometheus(prometheus),
        ),
    )
    .await;

    // Reads are open; liveness never depends on Qdrant.
    let live = http(addr, "GET", "/live", None, "").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok"));
    let health = http(addr, "GET", "/health", None, "").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["ready"], true);
    assert_eq!(health.json()["health"]["status"], "healthy");
    let breakers = http(addr, "GET", "/breakers", None, "").await.json();
    assert_eq!(breakers[0]["name"], "adm");
    assert_eq!(breakers[0]["state"], "closed");
    assert_eq!(
        http(addr, "GET", "/alerts", None, "").await.json(),
        serde_json::json!([])
    );

    // Mutations: no token, a wrong one → 401 (logged without the token); the right one works.
    let refused = http(addr, "POST", "/breakers/adm/force-open", None, "").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let wrong = http(addr, "POST", "/breakers/adm/force-open", Some("guess"), "").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        stack.breaker().state().as_str(),
        "closed",
        "nothing changed"
    );
    let opened = http(addr, "POST", "/breakers/adm/force-open", Some(TOKEN), "").await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.json()["state"], "forced_open");

    // What the on-call engineer sees now: not ready, an alert, the page.
    let health = http(addr, "GET", "/health", None, "").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["reasons"][0], "breaker `adm` is forced_open");
    let alerts = http(addr, "GET", "/alerts", None, "").await.json();
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["kind"], "breaker_open_too_long");
    assert_eq!(alerts[0]["subject"], "adm");
    let metrics = http(addr, "GET", "/metrics", None, "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("circuit_breaker_state{breaker=\"adm\",state=\"forced_open\"} 1"),
        "{}",
        metrics.body
    );

    let reset = http(addr, "POST", "/breakers/adm/reset", Some(TOKEN), "").await;
    assert_eq!(reset.json()["state"], "closed");
    assert_eq!(reset.json()["last_transition"], "reset");
    let disabled = http(addr, "POST", "/breakers/adm/disable", Some(TOKEN), "").await;
    assert_eq!(disabled.json()["state"], "disabled");
    let all = http(addr, "POST", "/breakers/reset", Some(TOKEN), "").await;
    assert_eq!(all.json()["reset"], 1);
    let tagged = http(addr, "POST", "/breakers/reset?tag=adm", Some(TOKEN), "").await;
    assert_eq!(tagged.json()["reset"], 1);
    let other = http(addr, "POST", "/breakers/reset?tag=other", Some(TOKEN), "").await;
    assert_eq!(other.json()["reset"], 0);
    assert_eq!(
        http(addr, "POST", "/breakers/adm/explode", Some(TOKEN), "")
            .await
            .status,
        404
    );
    assert_eq!(
        http(addr, "GET", "/breakers/nope", None, "").await.status,
        404
    );

    let events = captured.events();
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| {
            e.field("message")
                .is_some_and(|m| m.contains("admin request refused"))
                && e.field("path") == Some("/breakers/adm/force-open")
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!(refusals[0].field("token_given"), Some("false"));
    assert_eq!(refusals[1].field("token_given"), Some("true"));
    assert!(
        events
            .iter()
            .all(|e| !format!("{:?}", e.fields).contains("guess")
                && !format!("{:?}", e.fields).contains(TOKEN)),
        "no token in the logs"
    );
}

#[tokio::test]
async fn thresholds_change_through_the_reload_path_and_are_validated() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "thr");
    let addr = serve(stack.admin(AdminConfig::new().token(Some(TOKEN)))).await;

    let bad = http(
        addr,
        "PUT",
        "/breakers/config",
        Some(TOKEN),
        r#"{"failure_threshold": 0}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["error"],
        "breaker.failure_threshold (0) must be between 1 and 65535"
    );
    let unknown = http(
        addr,
        "PUT",
        "/breakers/config",
        Some(TOKEN),
        r#"{"treshold": 3}"#,
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("treshold"), "{}", unknown.body);

    let good = http(
        addr,
        "PUT",
        "/breakers/config",
        Some(TOKEN),
        r#"{"failure_threshold": 7, "open_wait": "20s"}"#,
    )
    .await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(good.json()["applied"], serde_json::json!(["breaker"]));
    assert_eq!(stack.config().breaker.failure_threshold, 7, "a hot reload");
    let one = http(addr, "GET", "/breakers/thr", None, "").await.json();
    assert_eq!(one["config"]["failure_threshold"], 7);
    assert_eq!(one["config"]["open_wait_secs"], 20.0);

    let trials = http(
        addr,
        "PUT",
        "/breakers/thr/config",
        Some(TOKEN),
        r#"{"half_open_trials": 4, "half_open_successes": 5}"#,
    )
    .await;
    assert_eq!(trials.status, 400);
    assert!(
        trials.body.contains("breaker.half_open_successes (5)"),
        "{}",
        trials.body
    );
    let trials = http(
        addr,
        "PUT",
        "/breakers/thr/config",
        Some(TOKEN),
        r#"{"half_open_trials": 4}"#,
    )
    .await;
    assert_eq!(trials.status, 200, "{}", trials.body);
    assert_eq!(stack.breaker().config().half_open_trials(), 4);
    assert_eq!(
        stack.breaker().config().consecutive_failures(),
        Some(7),
        "the rest kept"
    );

    let config = http(addr, "GET", "/config", None, "").await.json();
    assert_eq!(config["breaker"]["failure_threshold"], 7);
}

/// `POST /test-service` with `body`, authorized.
async fn probe(addr: SocketAddr, body: &str) -> crate::capture::Answer {
    http(addr, "POST", "/test-service", Some(TOKEN), body).await
}

#[tokio::test]
async fn test_service_probes_qdrant_and_reports_percentiles() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "probe");
    stack
        .client()
        .create_collection(
            CreateCollectionBuilder::new("probed")
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
        )
        .await
        .unwrap();
    let addr = serve(stack.admin(AdminConfig::new().token(Some(TOKEN)))).await;

    let report = probe(addr, r#"{"iterations": 5}"#).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!(
        (report["probe"].as_str(), report["ok"].as_u64()),
        (Some("health_check"), Some(5))
    );
    let latency = &report["latency_ms"];
    assert!(latency["min"].as_f64() <= latency["p50"].as_f64());
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
    assert!(latency["p99"].as_f64() <= latency["max"].as_f64());

    let count = probe(addr, r#"{"iterations": 2, "collection": "probed"}"#)
        .await
        .json();
    assert_eq!(
        (count["probe"].as_str(), count["ok"].as_u64()),
        (Some("count"), Some(2))
    );
    let missing = probe(addr, r#"{"iterations": 1, "collection": "absent"}"#)
        .await
        .json();
    assert_eq!(missing["outcomes"]["not_found"], 1);
    assert!(missing["last_error"].as_str().unwrap().contains("absent"));
    let too_many = probe(addr, r#"{"iterations": 1000}"#).await;
    assert_eq!(too_many.status, 400);

    // Down: every probe fails, quickly, with the reason.
    drop(server);
    let down = probe(addr, r#"{"iterations": 2}"#).await.json();
    assert_eq!(down["ok"], 0);
    assert!(down["last_error"].is_string());
}

#[tokio::test]
async fn protected_reads_and_no_token_configured() {
    let server = TestServer::start().await.unwrap();
    let stack = QdrantStack::builder()
        .config({
            let mut c = StackConfig::for_profile(Profile::Testing);
            c.endpoints = vec![server.url()];
            c
        })
        .keyed_breakers(BreakerKey::Collection)
        .build()
        .unwrap();
    stack.breaker_for("docs");
    let protected =
        serve(stack.admin(AdminConfig::new().token(Some(TOKEN)).protect_reads(true))).await;
    assert_eq!(
        http(protected, "GET", "/breakers", None, "").await.status,
        401
    );
    let list = http(protected, "GET", "/breakers", Some(TOKEN), "").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()[0]["name"], "qdrant/docs");
    let one = http(protected, "GET", "/breakers/qdrant%2Fdocs", Some(TOKEN), "").await;
    assert_eq!(
        one.json()["name"],
        "qdrant/docs",
        "names with a slash, URL-encoded"
    );
    // Liveness and the page stay open: a probe and a browser need no token.
    assert_eq!(http(protected, "GET", "/live", None, "").await.status, 200);
    assert_eq!(http(protected, "GET", "/", None, "").await.status, 200);

    // The same settings from a configuration (file or environment).
    let from_env = qdrant_tower::config::ConfigLoader::new()
        .env_vars([
            ("QDRANT_TOWER__ADMIN__TOKEN", TOKEN),
            ("QDRANT_TOWER__ADMIN__PROTECT_READS", "true"),
        ])
        .load()
        .unwrap();
    let configured = serve(stack.admin(AdminConfig::from_config(&from_env))).await;
    assert_eq!(
        http(configured, "GET", "/breakers", None, "").await.status,
        401
    );
    assert_eq!(
        http(configured, "GET", "/breakers", Some(TOKEN), "")
            .await
            .status,
        200
    );

    let no_token = serve(stack.admin(AdminConfig::new())).await;
    assert_eq!(
        http(no_token, "GET", "/breakers", None, "").await.status,
        200
    );
    let refused = http(no_token, "POST", "/breakers/reset", Some("anything"), "").await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("no admin token is configured"));
    assert_eq!(
        http(no_token, "GET", "/metrics", None, "").await.status,
        404
    );
}

#[tokio::test]
async fn the_status_page_is_one_self_contained_html_document() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, "page");
    let addr = serve(axum::Router::new().nest("/admin", stack.admin(AdminConfig::new()))).await;
    let page = http(addr, "GET", "/admin", None, "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.body;
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<title>qdrant-tower status</title>"));
    for section in [
        "Circuit breakers",
        "Alerts",
        "Recent transitions",
        "Health check",
        "Requests / s",
        "Errors / s",
    ] {
        assert!(html.contains(section), "{section}");
    }
    // It reads the JSON routes next to it and refreshes itself; nothing external.
    for route in [
        "get(\"health\")",
        "get(\"breakers\")",
        "get(\"alerts\")",
        "setInterval(refresh, 2000)",
    ] {
        assert!(html.contains(route), "{route}");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    // Nested under /admin, the routes the page asks for answer there.
    assert_eq!(
        http(addr, "GET", "/admin/breakers", None, "").await.json()[0]["name"],
        "page"
    );
}
