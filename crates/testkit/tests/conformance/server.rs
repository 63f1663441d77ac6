//! The testkit server as tests drive it (testkit only: these tests always start their own
//! servers): the cloneable [`ServerHandle`], crashes and WAL recovery, API keys (answered as
//! Qdrant 1.18 answers them, checked against the real server), and the call log's entries.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::qdrant_client::QdrantClient;
use qdrant_client::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, Distance, HealthCheckRequest,
    ListCollectionsRequest, PointStruct, ScrollPointsBuilder, UpsertPoints, UpsertPointsBuilder,
    VectorParamsBuilder, point_id::PointIdOptions, value::Kind,
};
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use qdrant_tower_testkit::{ServerHandle, TestServer};
use tonic::{Code, Request};

use super::{Conn, connect};

const DIM: u64 = 4;

async fn create(channel: &Conn, name: &str) {
    let created = CollectionsClient::new(channel.clone())
        .create(
            CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(DIM, Distance::Dot))
                .build(),
        )
        .await
        .expect("create");
    assert!(created.into_inner().result);
}

/// Points `from..to`, each with payload `{"i": id}`.
fn points(from: u64, to: u64) -> Vec<PointStruct> {
    (from..to)
        .map(|i| {
            let i_f = i as f32;
            PointStruct::new(i, vec![1.0, i_f, -i_f, 0.5], [("i", (i as i64).into())])
        })
        .collect()
}

async fn upsert(channel: &Conn, collection: &str, points: Vec<PointStruct>) {
    PointsClient::new(channel.clone())
        .upsert(
            UpsertPointsBuilder::new(collection, points)
                .wait(true)
                .build(),
        )
        .await
        .expect("upsert");
}

async fn count(channel: &Conn, collection: &str) -> u64 {
    PointsClient::new(channel.clone())
        .count(CountPointsBuilder::new(collection).exact(true).build())
        .await
        .expect("count")
        .into_inner()
        .result
        .expect("count result")
        .count
}

/// Every point as `(id, payload "i")`, sorted by id.
async fn scroll_all(channel: &Conn, collection: &str) -> Vec<(u64, i64)> {
    let found = PointsClient::new(channel.clone())
        .scroll(
            ScrollPointsBuilder::new(collection)
                .limit(10_000)
                .with_payload(true)
                .build(),
        )
        .await
        .expect("scroll")
        .into_inner()
        .result;
    let mut all: Vec<(u64, i64)> = found
        .into_iter()
        .map(|point| {
            let id = match point.id.and_then(|id| id.point_id_options) {
                Some(PointIdOptions::Num(id)) => id,
                other => panic!("unexpected id {other:?}"),
            };
            let i = match point.payload.get("i").and_then(|v| v.kind.clone()) {
                Some(Kind::IntegerValue(i)) => i,
                other => panic!("unexpected payload {other:?}"),
            };
            (id, i)
        })
        .collect();
    all.sort_unstable();
    all
}

/// Copies `from` into a new directory, leaving out every collection's WAL: what the segments
/// alone hold.
fn copy_without_wal(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == "wal" && from.file_name().is_some_and(|name| name == "shard") {
                continue;
            }
            copy_without_wal(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// How many points of `collection` the segments of `data_dir` hold without its WAL: loads a copy
/// without the WAL in a second server.
async fn points_without_wal(data_dir: &Path, collection: &str) -> u64 {
    let copy = tempfile::tempdir().unwrap();
    copy_without_wal(data_dir, copy.path());
    let server = TestServer::builder()
        .data_dir(copy.path())
        .start()
        .await
        .expect("a server starts on the copy");
    let channel = connect(server.url()).await;
    let found = count(&channel, collection).await;
    server.shutdown().await;
    found
}

// ---------------------------------------------------------------------------------------------
// The handle

#[tokio::test]
async fn a_handle_stops_and_restarts_the_server_from_another_task() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<ServerHandle>();

    let server = TestServer::start().await.unwrap();
    let channel = connect(server.url()).await;
    create(&channel, "kept").await;
    upsert(&channel, "kept", points(0, 5)).await;

    let handle = server.handle();
    assert_eq!(handle.url(), server.url());
    assert_eq!(handle.data_dir(), server.data_dir());
    let task = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle.stop().await;
            let stopped = !handle.is_running();
            handle.restart().await.map(|()| stopped)
        }
    });
    assert!(task.await.unwrap().unwrap(), "stopped between the two");
    assert!(server.is_running());
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "kept").await, 5);

    // The call log and faults are the server's, whichever handle reads them.
    handle.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Count)
            .first(1),
    );
    let status = PointsClient::new(channel.clone())
        .count(CountPointsBuilder::new("kept").build())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.calls().faulted(Rpc::Count, "kept"), 1);
    assert_eq!(handle.calls().faulted(Rpc::Count, "kept"), 1);
    assert!(server.faults().is_active());
    handle.clear_faults();

    // The TestServer owns the server: once it is gone, a handle cannot bring it back.
    drop(server);
    assert!(!handle.is_running());
    assert!(handle.restart().await.is_err());
    handle.stop().await;
    handle.crash().await;
}

// ---------------------------------------------------------------------------------------------
// Crashes

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_through_wal_replay() {
    let server = TestServer::start().await.unwrap();
    let handle = server.handle();
    let channel = connect(server.url()).await;
    create(&channel, "crashing").await;
    for batch in 0..5 {
        upsert(&channel, "crashing", points(batch * 20, batch * 20 + 20)).await;
    }
    let expected: Vec<(u64, i64)> = (0..100).map(|i| (i, i as i64)).collect();
    assert_eq!(scroll_all(&channel, "crashing").await, expected);

    tokio::spawn({
        let handle = handle.clone();
        async move { handle.crash().await }
    })
    .await
    .unwrap();
    assert!(!server.is_running());
    let refused = CollectionsClient::new(channel.clone())
        .list(ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // Nothing was flushed: the segments alone do not hold the acknowledged points, only the
    // WAL does. (Were the crash a flush, all 100 would be there.)
    let in_segments = points_without_wal(server.data_dir(), "crashing").await;
    assert!(
        in_segments < 100,
        "the crash flushed the segments ({in_segments} points without the WAL)"
    );

    // The restart replays the WAL: every acknowledged point is back, payloads included.
    handle.restart().await.unwrap();
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "crashing").await, 100);
    assert_eq!(scroll_all(&channel, "crashing").await, expected);

    // Writes after the recovery work, and a graceful stop (unlike the crash) flushes them all
    // into the segments.
    upsert(&channel, "crashing", points(100, 110)).await;
    handle.stop().await;
    assert_eq!(
        points_without_wal(server.data_dir(), "crashing").await,
        110,
        "a graceful stop flushes"
    );
    handle.restart().await.unwrap();
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "crashing").await, 110);
}

#[tokio::test]
async fn a_crash_cuts_calls_in_flight_and_a_persistent_directory_recovers_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let channel = connect(server.url()).await;
    create(&channel, "cut").await;
    upsert(&channel, "cut", points(0, 30)).await;

    // A call hung in the server when it dies gets no answer: its connection breaks.
    server.set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
    let hung = tokio::spawn({
        let channel = channel.clone();
        async move {
            PointsClient::new(channel)
                .search(
                    qdrant_client::qdrant::SearchPointsBuilder::new("cut", vec![1.0; 4], 1).build(),
                )
                .await
        }
    });
    while server.calls().count(Rpc::Search, "cut") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.crash().await;
    let status = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .expect("the hung call ends with the crash")
        .unwrap()
        .unwrap_err();
    assert!(
        !status.message().contains("shutting down"),
        "a crash sends no answer: {status:?}"
    );
    server.clear_faults();

    // The crash left no stray files next to the collections.
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().all(|name| !name.starts_with(".crash")),
        "{entries:?}"
    );

    // Crashing a stopped server does nothing; the restart recovers.
    server.crash().await;
    server.restart().await.unwrap();
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "cut").await, 30);
    server.shutdown().await;

    // And a new server on the same directory finds everything too.
    let server = TestServer::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "cut").await, 30);
}

#[tokio::test]
async fn a_scenario_crashes_and_restarts_the_server() {
    use qdrant_tower_testkit::scenario::{Scenario, Step};

    let server = TestServer::start().await.unwrap();
    let handle = server.handle();
    let channel = connect(server.url()).await;
    create(&channel, "timeline").await;
    upsert(&channel, "timeline", points(0, 12)).await;

    let ms = Duration::from_millis;
    let scenario = Scenario::new()
        .step(Step::new("crash", ms(20)).crash_server(&handle))
        .step(Step::new("restart", ms(20)).restart_server(&handle))
        .step(Step::new("stop", ms(20)).stop_server(&handle))
        .step(Step::new("restart again", ms(20)).restart_server(&handle));
    let mut running = Vec::new();
    scenario
        .run_with(|step| running.push((step.name().to_owned(), handle.is_running())))
        .await;
    let expected = [
        ("crash", false),
        ("restart", true),
        ("stop", false),
        ("restart again", true),
    ]
    .map(|(name, up)| (name.to_owned(), up));
    assert_eq!(running, expected);
    let channel = connect(server.url()).await;
    assert_eq!(count(&channel, "timeline").await, 12);
}

// ---------------------------------------------------------------------------------------------
// API keys

const RW: &str = "rw-key-for-tests";
const RO: &str = "ro-key-for-tests";

fn keyed<T>(message: T, headers: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in headers {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("ascii header"));
    }
    request
}

/// What a call answered: `Ok` or the status code and message.
type Outcome = Result<(), (Code, String)>;

fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    result
        .map(|_| ())
        .map_err(|status| (status.code(), status.message().to_owned()))
}

/// Headers of a call, and what list collections, count, upsert and create collection answer.
type Case<'a> = (Vec<(&'static str, &'a str)>, [Outcome; 4]);

fn denied(code: Code, message: &str) -> Outcome {
    Err((code, message.to_owned()))
}

#[tokio::test]
async fn api_keys_are_checked_as_qdrant_checks_them() {
    let server = TestServer::builder()
        .api_key(RW)
        .read_only_api_key(RO)
        .start()
        .await
        .unwrap();
    let debug = format!("{server:?} {:?}", server.handle());
    assert!(!debug.contains(RW) && !debug.contains(RO), "{debug}");

    let channel = connect(server.url()).await;
    let mut collections = CollectionsClient::new(channel.clone());
    let mut points_api = PointsClient::new(channel.clone());
    let rw = [("api-key", RW)];
    let create_request = |name: &str| {
        CreateCollectionBuilder::new(name)
            .vectors_config(VectorParamsBuilder::new(DIM, Distance::Dot))
            .build()
    };
    let upsert_request = |collection: &str| {
        UpsertPointsBuilder::new(collection, points(0, 1))
            .wait(true)
            .build()
    };
    outcome(
        collections
            .create(keyed(create_request("books"), &rw))
            .await,
    )
    .unwrap();

    let missing = denied(
        Code::Unauthenticated,
        "Must provide an API key or an Authorization bearer token",
    );
    let invalid = denied(Code::Unauthenticated, "Invalid API key or JWT");
    let forbidden = denied(
        Code::PermissionDenied,
        "Forbidden: Global manage access is required",
    );
    let bearer_rw = format!("Bearer {RW}");
    let bearer_ro = format!("Bearer {RO}");
    let lower_bearer = format!("bearer {RW}");
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            [
                missing.clone(),
                missing.clone(),
                missing.clone(),
                missing.clone(),
            ],
        ),
        (
            vec![("api-key", "wrong")],
            [
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
            ],
        ),
        (
            vec![("api-key", "")],
            [
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
            ],
        ),
        (vec![("api-key", RW)], [Ok(()), Ok(()), Ok(()), Ok(())]),
        (
            vec![("authorization", bearer_rw.as_str())],
            [Ok(()), Ok(()), Ok(()), Ok(())],
        ),
        (
            vec![("authorization", lower_bearer.as_str())],
            [
                missing.clone(),
                missing.clone(),
                missing.clone(),
                missing.clone(),
            ],
        ),
        (
            vec![("api-key", "wrong"), ("authorization", bearer_rw.as_str())],
            [
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
                invalid.clone(),
            ],
        ),
        (
            vec![("api-key", RO)],
            [Ok(()), Ok(()), forbidden.clone(), forbidden.clone()],
        ),
        (
            vec![("authorization", bearer_ro.as_str())],
            [Ok(()), Ok(()), forbidden.clone(), forbidden.clone()],
        ),
    ];
    for (n, (headers, expected)) in cases.iter().enumerate() {
        let seen = [
            outcome(
                collections
                    .list(keyed(ListCollectionsRequest {}, headers))
                    .await,
            ),
            outcome(
                points_api
                    .count(keyed(CountPointsBuilder::new("books").build(), headers))
                    .await,
            ),
            outcome(
                points_api
                    .upsert(keyed(upsert_request("books"), headers))
                    .await,
            ),
            outcome(
                collections
                    .create(keyed(create_request(&format!("made_{n}")), headers))
                    .await,
            ),
        ];
        assert_eq!(&seen, expected, "headers {headers:?}");
    }

    // The health check needs no key.
    let mut qdrant = QdrantClient::new(channel.clone());
    qdrant.health_check(HealthCheckRequest {}).await.unwrap();
    qdrant
        .health_check(keyed(HealthCheckRequest {}, &[("api-key", "wrong")]))
        .await
        .unwrap();

    // A point write with the read-only key on a missing collection: Qdrant looks the
    // collection up first. Other writes are forbidden whether or not it exists.
    let ro = [("api-key", RO)];
    assert_eq!(
        outcome(points_api.upsert(keyed(upsert_request("nope"), &ro)).await),
        denied(
            Code::NotFound,
            "Not found: Collection `nope` doesn't exist!"
        )
    );
    assert_eq!(
        outcome(
            collections
                .delete(keyed(
                    qdrant_client::qdrant::DeleteCollectionBuilder::new("nope").build(),
                    &ro
                ))
                .await
        ),
        forbidden
    );

    // Refused calls changed nothing and are in the call log as denied.
    let count_rw = outcome(
        points_api
            .count(keyed(
                CountPointsBuilder::new("books").exact(true).build(),
                &rw,
            ))
            .await,
    );
    assert_eq!(count_rw, Ok(()));
    let made = collections
        .list(keyed(ListCollectionsRequest {}, &rw))
        .await
        .unwrap()
        .into_inner()
        .collections
        .len();
    assert_eq!(made, 3, "books, and one collection per read-write case");
    let calls = server.calls();
    assert_eq!(
        calls.count_where(|call| call.rpc() == Rpc::Upsert && call.is_denied()),
        7
    );
    assert_eq!(
        calls.count_where(|call| call.is_health_probe() && call.is_denied()),
        0
    );
    // Five key-less or wrong-key cases refuse all four calls, the two read-only cases the two
    // writes, and the read-only delete.
    assert_eq!(calls.total_denied(), 5 * 4 + 2 * 2 + 1);
}

#[tokio::test]
async fn the_serve_binary_takes_api_keys() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qdrant-tower-testkit"))
        .args([
            "serve",
            "--port",
            "0",
            "--api-key",
            RW,
            "--read-only-api-key",
            RO,
        ])
        .env_remove("QDRANT__SERVICE__API_KEY")
        .env_remove("QDRANT__SERVICE__READ_ONLY_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the serve binary starts");
    let guard = KillOnDrop(&mut child);
    let stdout = guard.0.stdout.take().unwrap();
    // Read stdout to its end on a thread of its own: a closed pipe would kill the server at its
    // next line.
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = lines.iter();
        let listening = lines.find(|line| line.contains("listening on")).unwrap();
        let keys = lines.find(|line| line.starts_with("API key")).unwrap();
        (listening, keys)
    })
    .await
    .unwrap();
    assert!(
        !printed.1.contains(RW) && !printed.1.contains(RO),
        "{printed:?}"
    );
    let url = printed
        .0
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();

    let mut collections = CollectionsClient::new(connect(url).await);
    let status = collections
        .list(ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    collections
        .list(keyed(ListCollectionsRequest {}, &[("api-key", RO)]))
        .await
        .unwrap();
    let status = collections
        .create(keyed(
            CreateCollectionBuilder::new("x")
                .vectors_config(VectorParamsBuilder::new(DIM, Distance::Dot))
                .build(),
            &[("api-key", RO)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// SIGKILLs the child this test started if the test ends before it exits.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The call log

#[tokio::test]
async fn call_log_entries_name_their_connection_request_and_message() {
    let server = TestServer::start().await.unwrap();
    let first = connect(server.url()).await;
    let second = connect(server.url()).await;
    create(&first, "log").await;
    upsert(&first, "log", points(0, 3)).await;
    upsert(&second, "log", points(3, 4)).await;
    QdrantClient::new(second.clone())
        .health_check(HealthCheckRequest {})
        .await
        .unwrap();

    let calls = server.calls();
    let entries = calls.entries();
    assert_eq!(entries.len(), 4);
    let ids: Vec<u64> = entries.iter().map(|call| call.id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let connections: Vec<u64> = entries.iter().map(|call| call.connection_id()).collect();
    assert_eq!(
        connections[0], connections[1],
        "one channel, one connection"
    );
    assert_ne!(
        connections[1], connections[2],
        "another channel, another connection"
    );
    assert_eq!(connections[2], connections[3]);

    // The decoded request, as a fault predicate sees it.
    let sizes: Vec<usize> = calls
        .matching(|call| call.rpc() == Rpc::Upsert)
        .iter()
        .map(|call| call.message::<UpsertPoints>().unwrap().points.len())
        .collect();
    assert_eq!(sizes, [3, 1]);
    assert_eq!(
        calls.count_where(|call| call
            .message::<UpsertPoints>()
            .is_some_and(|upsert| upsert.wait == Some(true))),
        2
    );
    assert!(entries[0].collection() == Some("log") && entries[0].remote_addr().is_some());

    // Health probes are labelled, and counts can leave them out.
    assert!(entries[3].is_health_probe());
    assert!(entries[..3].iter().all(|call| !call.is_health_probe()));
    assert_eq!(calls.total(), 4);
    assert_eq!(calls.total_excluding_health_probes(), 3);

    // A fault can pick one connection by the id the log shows.
    let second_id = connections[2];
    server.set_faults(
        FaultRule::new(Fault::unavailable()).when(move |call| call.connection_id() == second_id),
    );
    upsert(&first, "log", points(4, 5)).await;
    let status = PointsClient::new(second.clone())
        .upsert(
            UpsertPointsBuilder::new("log", points(5, 6))
                .wait(true)
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    server.clear_faults();
    let last = calls.entries();
    let faulted: Vec<(u64, bool)> = last[4..]
        .iter()
        .map(|call| (call.connection_id(), call.is_faulted()))
        .collect();
    assert_eq!(faulted, [(connections[0], false), (second_id, true)]);

    // After a dropped connection the client comes back on a new one; ids keep counting across
    // a reset.
    server.drop_connections();
    calls.reset();
    let mut retried = None;
    for _ in 0..3 {
        let mut request = Request::new(CountPointsBuilder::new("log").build());
        request.set_timeout(Duration::from_secs(3));
        let attempt = PointsClient::new(first.clone()).count(request).await;
        if attempt.is_ok() {
            retried = Some(());
            break;
        }
    }
    retried.expect("the channel reconnects");
    let after = calls.matching(|call| call.rpc() == Rpc::Count);
    let last_call = after.last().unwrap();
    assert!(last_call.connection_id() > second_id, "{after:?}");
    assert!(last_call.id() > ids[3]);
    assert_eq!(last_call.grpc_timeout(), Some(Duration::from_secs(3)));
}
