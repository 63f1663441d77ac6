//! The stack built from configuration: hot reload (by API and by a watched file) under load,
//! keyed breakers isolating a faulted collection, and idempotent collection creation — all
//! against the embedded server.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_tower::config::{ConfigError, ConfigLoader, StackConfig};
use qdrant_tower::layers::BreakerKey;
use qdrant_tower::layers::breaker::BreakerState;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Client, ErrorKind, Payload, Profile, QdrantStack, StackService};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};

/// The testing profile with retries of `UNAVAILABLE` (3 attempts, delays scaled to ms).
fn config(server: &TestServer) -> StackConfig {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![server.url()];
    config.retry.unavailable.attempts = 3;
    config.retry.time_scale = 0.01;
    config
}

async fn collection(client: &Client<StackService>, name: &str) {
    client
        .create_collection(
            CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Euclid)),
        )
        .await
        .expect("created");
    let points: Vec<_> = (0..10u64)
        .map(|id| PointStruct::new(id, vec![id as f32, 1.0], Payload::new()))
        .collect();
    client
        .upsert(UpsertPointsBuilder::new(name, points).wait(true))
        .await
        .expect("upserted");
}

fn search(name: &str) -> SearchPointsBuilder {
    SearchPointsBuilder::new(name, vec![1.0, 1.0], 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_swap_timeouts_retry_and_breaker_under_load_without_a_failed_call() {
    let server = TestServer::start().await.unwrap();
    let base = config(&server);
    let stack = QdrantStack::builder().config(base.clone()).build().unwrap();
    let client = stack.client();
    collection(&client, "docs").await;

    // Load: 8 tasks searching without pause while the configuration changes under them.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, stop, ok, failed) =
                (client.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.search(search("docs")).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            eprintln!("failed under reload: {error}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let mut reloads = 0;
    for i in 0..40u32 {
        let mut next = base.clone();
        next.deadline = Duration::from_secs(3 + u64::from(i % 3));
        next.attempt_timeout = Duration::from_millis(1_000 + 100 * u64::from(i % 4));
        next.retry.unavailable.attempts = 2 + i % 3;
        next.retry.connect.base_delay = Duration::from_millis(50 + u64::from(i));
        next.breaker.failure_threshold = 3 + i % 5;
        next.breaker.open_wait = Duration::from_secs(10 + u64::from(i % 2));
        let reloaded = stack.reload(next).unwrap();
        assert!(reloaded.needs_restart.is_empty(), "{reloaded:?}");
        reloads += usize::from(!reloaded.applied.is_empty());
        // An invalid one in between: rejected, nothing changes.
        let mut bad = base.clone();
        bad.retry.unavailable.max_delay = Duration::ZERO;
        let before = stack.config();
        assert!(matches!(stack.reload(bad), Err(ConfigError::Invalid(_))));
        assert_eq!(stack.config(), before);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(reloads, 40);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call failed");
    assert!(
        ok.load(Ordering::Relaxed) >= 40,
        "the load ran throughout ({} calls)",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(stack.config().breaker.failure_threshold, 3 + 39 % 5);
}

#[tokio::test]
async fn a_reload_changes_what_the_running_stack_does() {
    let server = TestServer::start().await.unwrap();
    let base = config(&server);
    let stack = QdrantStack::builder().config(base.clone()).build().unwrap();
    let client = stack.client();
    collection(&client, "docs").await;

    // Retry table: 3 attempts ride out two UNAVAILABLEs...
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(2),
    );
    client.search(search("docs")).await.unwrap();
    // ...after a reload to 1 attempt, one is returned at once.
    let mut once = base.clone();
    once.retry.unavailable.attempts = 1;
    assert_eq!(stack.reload(once.clone()).unwrap().applied, ["retry"]);
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(1),
    );
    let error = client.search(search("docs")).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::Unavailable, 1)
    );

    // Breaker: 2 failures now open it.
    let mut sensitive = once.clone();
    sensitive.breaker.failure_threshold = 2;
    assert_eq!(
        stack.reload(sensitive.clone()).unwrap().applied,
        ["breaker"]
    );
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(2),
    );
    for _ in 0..2 {
        client.search(search("docs")).await.unwrap_err();
    }
    assert_eq!(stack.breaker().state(), BreakerState::Open);
    let rejected = client.search(search("docs")).await.unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::CircuitOpen);
    stack.breaker().reset();

    // Deadline: a 50 ms deadline ends a call the server answers after 300 ms...
    let mut short = sensitive.clone();
    short.deadline = Duration::from_millis(50);
    short.attempt_timeout = Duration::from_millis(50);
    let applied = stack.reload(short).unwrap().applied;
    assert_eq!(applied, ["deadline", "attempt_timeout"]);
    server.set_faults(
        FaultRule::new(Fault::delay(Duration::from_millis(300)))
            .rpc(Rpc::Search)
            .first(1),
    );
    let error = client.search(search("docs")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    // ...and back to seconds, the same slow answer arrives.
    stack.reload(sensitive).unwrap();
    server.set_faults(
        FaultRule::new(Fault::delay(Duration::from_millis(300)))
            .rpc(Rpc::Search)
            .first(1),
    );
    client.search(search("docs")).await.unwrap();
}

#[tokio::test]
async fn builder_settings_win_over_reloads_and_restart_only_changes_are_reported() {
    let server = TestServer::start().await.unwrap();
    let base = config(&server);
    let stack = QdrantStack::builder()
        .config(base.clone())
        .deadline(Duration::from_secs(4))
        .build()
        .unwrap();
    let mut next = base.clone();
    next.deadline = Duration::from_secs(9);
    next.endpoints = vec!["http://127.0.0.1:1".to_owned()];
    next.connections.max = 3;
    next.health.interval = Duration::from_secs(1);
    next.breaker.keyed = qdrant_tower::config::Keyed::Collection;
    let reloaded = stack.reload(next).unwrap();
    assert_eq!(reloaded.applied, ["health"], "{reloaded:?}");
    assert_eq!(stack.health().config().interval(), Duration::from_secs(1));
    assert_eq!(
        reloaded.needs_restart,
        ["endpoints", "connections", "breaker.keyed"]
    );
    assert_eq!(
        stack.config().deadline,
        Duration::from_secs(4),
        "the builder's"
    );
}

/// The watcher's outcome once it has read the file `n` times (at most 10 s from now).
async fn reload_number(
    changes: &mut tokio::sync::watch::Receiver<qdrant_tower::config::ReloadEvent>,
    n: u64,
) -> qdrant_tower::config::ReloadEvent {
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|event| event.reloads >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("read {n} times within 10 s"))
    .expect("the watcher is alive")
    .clone()
}

/// Writes `text` to `path` as deployments do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test]
async fn a_watched_file_reloads_the_stack_and_a_bad_one_is_rejected() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qdrant.toml");
    std::fs::write(&path, "profile = \"testing\"\ndeadline = \"3s\"\n").unwrap();
    let loader = ConfigLoader::new()
        .file(&path)
        .env_vars([("QDRANT_URL", server.url())]);
    let stack = QdrantStack::builder()
        .config(loader.load().unwrap())
        .build()
        .unwrap();
    assert_eq!(stack.config().deadline, Duration::from_secs(3));
    let watcher = stack.watch(loader).unwrap();
    let mut changes = watcher.changes();

    replace(
        &path,
        "profile = \"testing\"\ndeadline = \"4s\"\n[breaker]\nfailure_threshold = 7\n",
    );
    let event = reload_number(&mut changes, 1).await;
    let applied = event.outcome.unwrap().unwrap().applied;
    assert_eq!(applied, ["deadline", "breaker"]);
    assert_eq!(stack.config().deadline, Duration::from_secs(4));
    assert_eq!(stack.config().breaker.failure_threshold, 7);

    replace(
        &path,
        "profile = \"testing\"\ndeadline = \"5s\"\n[breaker]\nfailure_treshold = 0\n",
    );
    let event = reload_number(&mut changes, 2).await;
    let error = event.outcome.unwrap().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("did you mean `failure_threshold`"),
        "{error}"
    );
    assert_eq!(
        stack.config().deadline,
        Duration::from_secs(4),
        "the running configuration stays"
    );
    assert_eq!(watcher.last().reloads, 2);
    drop(watcher);
    assert!(
        QdrantStack::builder()
            .config(config(&server))
            .build()
            .unwrap()
            .watch(ConfigLoader::new())
            .is_err(),
        "nothing to watch"
    );
}

/// A stack with breakers keyed by `key` that open after 2 failures, and no retries.
fn keyed(server: &TestServer, key: BreakerKey) -> QdrantStack {
    let mut base = config(server);
    base.retry.unavailable.attempts = 1;
    base.breaker.failure_threshold = 2;
    QdrantStack::builder()
        .config(base)
        .keyed_breakers(key)
        .build()
        .unwrap()
}

#[tokio::test]
async fn keyed_breakers_isolate_a_faulted_collection() {
    let server = TestServer::start().await.unwrap();
    let stack = keyed(&server, BreakerKey::Collection);
    let client = stack.client();
    collection(&client, "sick").await;
    collection(&client, "well").await;

    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .collection("sick"),
    );
    for _ in 0..2 {
        let error = client.search(search("sick")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
    let rejected = client.search(search("sick")).await.unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::CircuitOpen);
    assert!(
        rejected
            .to_string()
            .starts_with("search on collection `sick` failed (circuit_open)")
            && rejected.to_string().contains("qdrant/sick"),
        "{rejected}"
    );
    // The other collection goes on.
    for _ in 0..5 {
        client.search(search("well")).await.unwrap();
    }
    assert_eq!(stack.breaker_for("sick").state(), BreakerState::Open);
    assert_eq!(stack.breaker_for("well").state(), BreakerState::Closed);
    let mut names: Vec<String> = stack
        .breakers()
        .list()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["qdrant/sick", "qdrant/well"]);
    // A reload reconfigures every keyed breaker.
    let mut next = stack.config();
    next.breaker.half_open_trials = 5;
    next.breaker.half_open_successes = 4;
    stack.reload(next).unwrap();
    for breaker in stack.breakers().list() {
        assert_eq!(breaker.config().half_open_trials(), 5, "{}", breaker.name());
    }
}

#[tokio::test]
async fn keyed_by_class_failing_reads_do_not_stop_writes() {
    let server = TestServer::start().await.unwrap();
    let stack = keyed(&server, BreakerKey::CollectionAndClass);
    let client = stack.client();
    collection(&client, "docs").await;
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
    for _ in 0..3 {
        client.search(search("docs")).await.unwrap_err();
    }
    assert_eq!(
        client.search(search("docs")).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    let point = PointStruct::new(99, vec![9.0, 9.0], Payload::new());
    client
        .upsert(UpsertPointsBuilder::new("docs", vec![point]).wait(true))
        .await
        .expect("writes have their own breaker");
    assert!(stack.breakers().get("qdrant/docs/read").is_some());
    assert_eq!(
        stack.breakers().get("qdrant/docs/write").unwrap().state(),
        BreakerState::Closed
    );
}

fn create(name: &str, size: u64) -> CreateCollectionBuilder {
    CreateCollectionBuilder::new(name)
        .vectors_config(VectorParamsBuilder::new(size, Distance::Cosine))
}

#[tokio::test]
async fn an_ambiguous_create_is_retried_and_counts_when_the_collection_matches() {
    let server = TestServer::start().await.unwrap();
    let stack = QdrantStack::builder()
        .config(config(&server))
        .idempotent_create(true)
        .build()
        .unwrap();
    let client = stack.client();
    // The first attempt creates the collection, then its answer is lost (UNAVAILABLE): the
    // retry answers ALREADY_EXISTS, and the collection is the one asked for.
    let apply_then_fail = FaultRule::new(Fault::apply_then_unavailable())
        .rpc(Rpc::CreateCollection)
        .first(1);
    server.set_faults(apply_then_fail.clone());
    let created = client.create_collection(create("a", 4)).await.unwrap();
    assert!(created.result);
    assert_eq!(server.calls().count(Rpc::CreateCollection, "a"), 2);

    // A collection that existed before the call is still an error (first attempt).
    let error = client.create_collection(create("a", 4)).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::AlreadyExists, 1)
    );

    // A retry that finds a different collection under the name is an error too.
    client.create_collection(create("b", 3)).await.unwrap();
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::CreateCollection)
            .first(1),
    );
    let error = client.create_collection(create("b", 4)).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::AlreadyExists, 2)
    );

    // Off (the default): the create is not retried, the caller learns it may have applied.
    let plain = QdrantStack::builder()
        .config(config(&server))
        .build()
        .unwrap();
    server.set_faults(apply_then_fail);
    let error = plain
        .client()
        .create_collection(create("c", 4))
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::Unavailable, 1)
    );
    assert!(error.maybe_sent());
}
