//! Property test of the testkit's protobuf → engine conversions on structurally arbitrary
//! messages (the short CI version of the `testkit_convert` fuzz target,
//! `fuzz/fuzz_targets/testkit_convert.rs`).
//!
//! One in-process `TestServer` with three collections (a plain dense vector; named dense,
//! multi-dense and sparse vectors; a missing one) gets generated upserts, searches, queries,
//! scrolls, counts, gets, payload writes, batches, deletes and field indexes: random ids (bad
//! UUID strings too), vectors of every shape with NaN and infinities, any payload values and
//! filters of every condition kind. Each message goes twice: through `QdrantService` (which
//! may refuse it, validated, before sending) and straight over gRPC, so that what validation
//! would stop reaches the server's conversions too. Every call must end, within 5 s, in an
//! answer or a typed error / gRPC status; nothing may panic anywhere in the process (the
//! engine's worker threads included); and afterwards the server still answers health checks,
//! writes and searches.

mod prop_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prop_common::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use qdrant_tower_client::qdrant::points_client::PointsClient;
use qdrant_tower_client::qdrant::{
    CountPoints, CreateFieldIndexCollection, DeletePoints, GetPoints, OrderBy,
    PayloadExcludeSelector, PayloadIncludeSelector, PointStruct, PointsIdsList, PointsSelector,
    PointsUpdateOperation, PrefetchQuery, Query, QueryPoints, ScrollPoints, SearchPoints,
    SearchPointsBuilder, SetPayloadPoints, UpdateBatchPoints, UpsertPoints, UpsertPointsBuilder,
    VectorInput, WithPayloadSelector, WithVectorsSelector, points_selector::PointsSelectorOneOf,
    points_update_operation, query, with_payload_selector::SelectorOptions, with_vectors_selector,
};
use qdrant_tower_client::{QdrantService, VectorError, VectorRequest, VectorResponse};
use qdrant_tower_testkit::TestServer;
use tonic::Code;
use tonic::transport::Channel;
use tower::ServiceExt;

/// The longest any one call may take before it counts as a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// One generated call.
// Each value lives for one case: not worth boxing the big messages.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Call {
    Upsert(UpsertPoints),
    Search(SearchPoints),
    Query(QueryPoints),
    Scroll(ScrollPoints),
    Count(CountPoints),
    Get(GetPoints),
    SetPayload(SetPayloadPoints),
    UpdateBatch(UpdateBatchPoints),
    Delete(DeletePoints),
    CreateFieldIndex(CreateFieldIndexCollection),
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Upsert(_) => "upsert",
            Call::Search(_) => "search",
            Call::Query(_) => "query",
            Call::Scroll(_) => "scroll",
            Call::Count(_) => "count",
            Call::Get(_) => "get",
            Call::SetPayload(_) => "set_payload",
            Call::UpdateBatch(_) => "update_batch",
            Call::Delete(_) => "delete",
            Call::CreateFieldIndex(_) => "create_field_index",
        }
    }

    fn request(&self) -> VectorRequest {
        match self.clone() {
            Call::Upsert(m) => m.into(),
            Call::Search(m) => m.into(),
            Call::Query(m) => m.into(),
            Call::Scroll(m) => m.into(),
            Call::Count(m) => m.into(),
            Call::Get(m) => m.into(),
            Call::SetPayload(m) => m.into(),
            Call::UpdateBatch(m) => m.into(),
            Call::Delete(m) => m.into(),
            Call::CreateFieldIndex(m) => m.into(),
        }
    }

    /// Sends the message over gRPC, not validated.
    async fn raw(&self, mut points: PointsClient<Channel>) -> Result<(), tonic::Status> {
        match self.clone() {
            Call::Upsert(m) => points.upsert(m).await.map(drop),
            #[allow(deprecated)] // Still served by Qdrant, and by the testkit.
            Call::Search(m) => points.search(m).await.map(drop),
            Call::Query(m) => points.query(m).await.map(drop),
            Call::Scroll(m) => points.scroll(m).await.map(drop),
            Call::Count(m) => points.count(m).await.map(drop),
            Call::Get(m) => points.get(m).await.map(drop),
            Call::SetPayload(m) => points.set_payload(m).await.map(drop),
            Call::UpdateBatch(m) => points.update_batch(m).await.map(drop),
            Call::Delete(m) => points.delete(m).await.map(drop),
            Call::CreateFieldIndex(m) => points.create_field_index(m).await.map(drop),
        }
    }
}

fn collection() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("dense".to_owned()),
        4 => Just("named".to_owned()),
        1 => Just("missing".to_owned()),
        1 => Just(String::new()),
    ]
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 1u64..20,
        1 => Just(0u64),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

fn wait() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![3 => Just(Some(true)), 1 => Just(Some(false)), 1 => Just(None)]
}

fn with_payload() -> impl Strategy<Value = Option<WithPayloadSelector>> {
    let keys = || prop::collection::vec(payload_key(), 0..3);
    prop::option::of(prop_oneof![
        any::<bool>().prop_map(SelectorOptions::Enable),
        keys().prop_map(|fields| SelectorOptions::Include(PayloadIncludeSelector { fields })),
        keys().prop_map(|fields| SelectorOptions::Exclude(PayloadExcludeSelector { fields })),
    ])
    .prop_map(|options| {
        options.map(|o| WithPayloadSelector {
            selector_options: Some(o),
        })
    })
}

fn with_vectors() -> impl Strategy<Value = Option<WithVectorsSelector>> {
    prop::option::of(prop_oneof![
        any::<bool>().prop_map(with_vectors_selector::SelectorOptions::Enable),
        prop::collection::vec(vector_name(), 0..3).prop_map(|names| {
            with_vectors_selector::SelectorOptions::Include(
                qdrant_tower_client::qdrant::VectorsSelector { names },
            )
        }),
    ])
    .prop_map(|options| {
        options.map(|o| WithVectorsSelector {
            selector_options: Some(o),
        })
    })
}

fn selector() -> impl Strategy<Value = Option<PointsSelector>> {
    prop::option::of(prop_oneof![
        prop::collection::vec(point_id(), 0..4)
            .prop_map(|ids| PointsSelectorOneOf::Points(PointsIdsList { ids })),
        filter().prop_map(PointsSelectorOneOf::Filter),
    ])
    .prop_map(|one_of| {
        one_of.map(|o| PointsSelector {
            points_selector_one_of: Some(o),
        })
    })
}

fn vector_input() -> impl Strategy<Value = VectorInput> {
    prop_oneof![
        4 => dense(5).prop_map(VectorInput::new_dense),
        2 => prop::collection::vec(finite_component(), 2).prop_map(VectorInput::new_dense),
        2 => (prop::collection::vec(0u32..8, 0..4), prop::collection::vec(component(), 0..4))
            .prop_map(|(i, v)| VectorInput::new_sparse(i, v)),
        2 => prop::collection::vec(dense(4), 0..3).prop_map(VectorInput::new_multi),
        1 => point_id().prop_map(VectorInput::new_id),
        1 => Just(VectorInput { variant: None }),
    ]
}

fn query_message() -> impl Strategy<Value = Option<Query>> {
    prop::option::of(prop_oneof![
        6 => vector_input().prop_map(Query::new_nearest),
        1 => any::<i32>().prop_map(|f| Query { variant: Some(query::Variant::Fusion(f)) }),
        1 => any::<i32>().prop_map(|s| Query { variant: Some(query::Variant::Sample(s)) }),
        1 => (payload_key(), prop::option::of(any::<i32>())).prop_map(|(key, direction)| Query {
            variant: Some(query::Variant::OrderBy(OrderBy { key, direction, start_from: None })),
        }),
        1 => Just(Query { variant: None }),
    ])
}

fn call() -> impl Strategy<Value = Call> {
    let name = || prop::option::of(vector_name());
    prop_oneof![
        4 => (collection(), prop::collection::vec(point(), 0..4), wait()).prop_map(
            |(collection_name, points, wait)| Call::Upsert(UpsertPoints {
                collection_name,
                points,
                wait,
                ..Default::default()
            })
        ),
        3 => (collection(), dense(5), limit(), prop::option::of(filter()), name(), with_payload(), with_vectors(), prop::option::of(any::<u64>()))
            .prop_map(|(collection_name, vector, limit, filter, vector_name, with_payload, with_vectors, offset)| {
                Call::Search(SearchPoints {
                    collection_name,
                    vector,
                    limit,
                    filter,
                    vector_name,
                    with_payload,
                    with_vectors,
                    offset,
                    ..Default::default()
                })
            }),
        3 => (
            collection(),
            query_message(),
            name(),
            prop::option::of(limit()),
            prop::option::of(filter()),
            prop::collection::vec(
                (query_message(), name(), prop::option::of(limit())).prop_map(|(query, using, limit)| {
                    PrefetchQuery { query, using, limit, ..Default::default() }
                }),
                0..2,
            ),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(collection_name, query, using, limit, filter, prefetch, offset)| {
                Call::Query(QueryPoints {
                    collection_name,
                    query,
                    using,
                    limit,
                    filter,
                    prefetch,
                    offset,
                    ..Default::default()
                })
            }),
        2 => (collection(), prop::option::of(filter()), prop::option::of(point_id()), prop::option::of(prop_oneof![0u32..20, any::<u32>()]), with_payload(), prop::option::of((payload_key(), prop::option::of(any::<i32>()))))
            .prop_map(|(collection_name, filter, offset, limit, with_payload, order_by)| {
                Call::Scroll(ScrollPoints {
                    collection_name,
                    filter,
                    offset,
                    limit,
                    with_payload,
                    order_by: order_by.map(|(key, direction)| OrderBy { key, direction, start_from: None }),
                    ..Default::default()
                })
            }),
        1 => (collection(), prop::option::of(filter()), prop::option::of(any::<bool>())).prop_map(
            |(collection_name, filter, exact)| Call::Count(CountPoints {
                collection_name,
                filter,
                exact,
                ..Default::default()
            })
        ),
        1 => (collection(), prop::collection::vec(point_id(), 0..4), with_payload(), with_vectors()).prop_map(
            |(collection_name, ids, with_payload, with_vectors)| Call::Get(GetPoints {
                collection_name,
                ids,
                with_payload,
                with_vectors,
                ..Default::default()
            })
        ),
        1 => (collection(), payload(), selector(), prop::option::of(payload_key()), wait()).prop_map(
            |(collection_name, payload, points_selector, key, wait)| Call::SetPayload(SetPayloadPoints {
                collection_name,
                payload,
                points_selector,
                key,
                wait,
                ..Default::default()
            })
        ),
        1 => (collection(), prop::collection::vec(prop::collection::vec(point(), 0..3), 0..3), selector()).prop_map(
            |(collection_name, lists, delete)| {
                let mut operations: Vec<PointsUpdateOperation> = lists
                    .into_iter()
                    .map(|points| PointsUpdateOperation {
                        operation: Some(points_update_operation::Operation::Upsert(
                            points_update_operation::PointStructList { points, ..Default::default() },
                        )),
                    })
                    .collect();
                operations.push(PointsUpdateOperation {
                    operation: Some(points_update_operation::Operation::DeletePoints(
                        points_update_operation::DeletePoints { points: delete, ..Default::default() },
                    )),
                });
                Call::UpdateBatch(UpdateBatchPoints {
                    collection_name,
                    operations,
                    wait: Some(true),
                    ..Default::default()
                })
            }
        ),
        1 => (collection(), selector(), wait()).prop_map(|(collection_name, points, wait)| {
            Call::Delete(DeletePoints { collection_name, points, wait, ..Default::default() })
        }),
        1 => (collection(), payload_key(), prop::option::of(prop_oneof![0i32..10, any::<i32>()]), wait()).prop_map(
            |(collection_name, field_name, field_type, wait)| Call::CreateFieldIndex(CreateFieldIndexCollection {
                collection_name,
                field_name,
                field_type,
                wait,
                ..Default::default()
            })
        ),
    ]
}

/// Counts panics anywhere in the process (server handlers, the engine's worker threads and
/// tokio's blocking pool included), which a gRPC status could otherwise hide.
fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&panics);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    panics
}

/// A gRPC status the server means to send: not a transport failure, a hang, or a panic
/// turned into `INTERNAL` ("task join error").
fn deliberate(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        Code::Unknown | Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    ) && !status.message().contains("panic")
        && !status.message().contains("join error")
}

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    service_ok: usize,
    service_refused: usize,
    service_server_error: usize,
    raw_ok: usize,
    raw_status: usize,
    /// How often each answer (code and message start) came back over gRPC.
    answers: std::collections::BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.service_ok += other.service_ok;
        self.service_refused += other.service_refused;
        self.service_server_error += other.service_server_error;
        self.raw_ok += other.raw_ok;
        self.raw_status += other.raw_status;
        for (answer, n) in &other.answers {
            *self.answers.entry(answer.clone()).or_default() += n;
        }
    }
}

async fn setup(server: &TestServer, service: &QdrantService) {
    for create in qdrant_tower_testkit::fuzzing::sample_collections() {
        let request = VectorRequest::from(create);
        service
            .clone()
            .oneshot(request)
            .await
            .expect("collection created");
    }
    let _ = server;
}

#[test]
fn testkit_answers_arbitrary_messages_with_a_status_and_stays_up() {
    // Generating nested messages takes more stack than a test thread has in debug builds
    // (proptest's value trees of big tuples live on the stack): run on a thread with more.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

fn run() {
    let panics = count_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (server, service, channel) = runtime.block_on(async {
        let server = tokio::time::timeout(Duration::from_secs(30), TestServer::start())
            .await
            .expect("server starts in time")
            .expect("server starts");
        let service = QdrantService::from_url(server.url()).expect("service");
        let channel = tokio::time::timeout(
            CALL_DEADLINE,
            Channel::from_shared(server.url()).unwrap().connect(),
        )
        .await
        .expect("connects in time")
        .expect("connects");
        tokio::time::timeout(Duration::from_secs(30), setup(&server, &service))
            .await
            .expect("setup in time");
        (server, service, channel)
    });

    let tally = std::sync::Mutex::new(Tally::default());
    let mut runner = TestRunner::new(cases(64));
    let result = runner.run(&call(), |call| {
        let mut t = Tally {
            sent: 1,
            ..Tally::default()
        };
        runtime.block_on(async {
            let through_service =
                tokio::time::timeout(CALL_DEADLINE, service.clone().oneshot(call.request())).await;
            match through_service {
                Err(_) => return Err(TestCaseError::fail("QdrantService call hung for 5 s")),
                Ok(Ok(_response)) => t.service_ok += 1,
                Ok(Err(error)) => check_service_error(&error, &mut t)?,
            }
            let raw =
                tokio::time::timeout(CALL_DEADLINE, call.raw(PointsClient::new(channel.clone())))
                    .await;
            match raw {
                Err(_) => return Err(TestCaseError::fail("gRPC call hung for 5 s")),
                Ok(Ok(())) => {
                    t.raw_ok += 1;
                    t.answers.insert(format!("{} OK", call.name()), 1);
                }
                Ok(Err(status)) => {
                    prop_assert!(deliberate(&status), "not an answer: {status:?}");
                    t.raw_status += 1;
                    let message: String = status.message().chars().take(60).collect();
                    let answer = format!("{} {:?} {message}", call.name(), status.code());
                    t.answers.insert(answer, 1);
                }
            }
            Ok(())
        })?;
        tally.lock().unwrap().add(&t);
        prop_assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
        Ok(())
    });
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "{} calls in {:?}: through QdrantService {} ok, {} refused by validation, {} \
         answered with an error; over gRPC {} ok, {} answered with a status:",
        tally.sent,
        started.elapsed(),
        tally.service_ok,
        tally.service_refused,
        tally.service_server_error,
        tally.raw_ok,
        tally.raw_status
    );
    let mut answers: Vec<_> = tally.answers.iter().collect();
    answers.sort_by(|a, b| b.1.cmp(a.1));
    for (answer, n) in answers.iter().take(12) {
        eprintln!("  {n:>4} × {answer}");
    }
    if let Err(error) = result {
        panic!("{error}");
    }

    // The server survived: health checks, a write and a search still work.
    runtime.block_on(async {
        let health = tokio::time::timeout(
            CALL_DEADLINE,
            service.clone().oneshot(VectorRequest::health_check()),
        )
        .await
        .expect("health check in time")
        .expect("server healthy");
        assert!(matches!(health, VectorResponse::HealthCheck(_)));
        let upsert = UpsertPointsBuilder::new(
            "dense",
            vec![PointStruct::new(
                424_242,
                vec![1.0, 0.0, 0.0, 0.0],
                [("after", "run".into())],
            )],
        )
        .wait(true);
        tokio::time::timeout(CALL_DEADLINE, service.clone().oneshot(upsert.into()))
            .await
            .expect("upsert in time")
            .expect("upsert after the run");
        let search = SearchPointsBuilder::new("dense", vec![1.0, 0.0, 0.0, 0.0], 3);
        let answer = tokio::time::timeout(CALL_DEADLINE, service.clone().oneshot(search.into()))
            .await
            .expect("search in time")
            .expect("search after the run");
        let VectorResponse::Search(answer) = answer else {
            panic!("{answer:?}")
        };
        assert!(!answer.result.is_empty());
    });
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
    assert!(tally.raw_ok > 0 && tally.raw_status > 0, "{tally:?}");
    drop(server);
}

fn check_service_error(error: &VectorError, t: &mut Tally) -> Result<(), TestCaseError> {
    use qdrant_tower_layers::ErrorKind;
    prop_assert!(!error.to_string().is_empty());
    if error.kind() == ErrorKind::InvalidRequest && !error.maybe_sent() {
        t.service_refused += 1;
        return Ok(());
    }
    // The server's own answer: a status it meant to send.
    prop_assert!(
        !matches!(
            error.kind(),
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Unavailable
        ),
        "the server did not answer: {error}"
    );
    prop_assert!(
        !error.to_string().contains("panic") && !error.to_string().contains("join error"),
        "{error}"
    );
    t.service_server_error += 1;
    Ok(())
}
