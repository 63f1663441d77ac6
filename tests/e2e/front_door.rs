//! The front door: `QdrantStack` built from a profile, the typed `Client` over it, per-call
//! deadlines and the hooks for the user's own layers — against the embedded server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use qdrant_tower::layers::retry::{KindPolicy, RetryPolicy};
use qdrant_tower::qdrant::{
    CollectionExistsRequest, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder, DeletePointsBuilder, Distance,
    FacetCountsBuilder, FieldType, Filter, GetCollectionInfoRequest, GetPointsBuilder,
    HealthCheckRequest, ListCollectionsRequest, PointStruct, PointsIdsList,
    QueryBatchPointsBuilder, QueryPointsBuilder, ScrollPointsBuilder, SearchPointsBuilder,
    SetPayloadPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{
    Client, ErrorKind, Payload, Profile, QdrantStack, StackService, VectorError, VectorRequest,
    VectorResponse,
};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};

const DOCS: &str = "docs";

async fn stack(server: &TestServer) -> QdrantStack {
    QdrantStack::builder()
        .endpoint(server.url())
        .profile(Profile::Testing)
        .build()
        .expect("a valid stack")
}

/// `docs`: 25 points on a 2-d plane, `lang` en for even ids and de for odd ones.
async fn docs(client: &Client<StackService>) {
    client
        .create_collection(
            CreateCollectionBuilder::new(DOCS)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Euclid)),
        )
        .await
        .expect("created");
    let points: Vec<_> = (0..25u64)
        .map(|id| {
            let lang = if id % 2 == 0 { "en" } else { "de" };
            let payload = Payload::try_from(json!({ "lang": lang })).unwrap();
            PointStruct::new(id, vec![id as f32, 0.0], payload)
        })
        .collect();
    client
        .upsert(UpsertPointsBuilder::new(DOCS, points).wait(true))
        .await
        .expect("upserted");
}

fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>(_: &T) {}

#[tokio::test]
async fn every_typed_method_answers_its_own_response_through_the_ready_stack() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server).await;
    let client = stack.client();
    assert_clone_send_sync(&stack.service());
    assert_clone_send_sync(&client);
    docs(&client).await;

    let found = client
        .search(
            SearchPointsBuilder::new(DOCS, vec![3.1, 0.0], 3)
                .filter(Filter::must([Condition::matches("lang", "de".to_string())])),
        )
        .await
        .unwrap();
    let ids: Vec<_> = found
        .result
        .iter()
        .map(|hit| hit.id.clone().unwrap())
        .collect();
    assert_eq!(ids, [3.into(), 5.into(), 1.into()]);

    let queried = client
        .query(
            QueryPointsBuilder::new(DOCS)
                .query(vec![10.0, 0.0])
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(queried.result[0].id, Some(10.into()));
    let batch = client
        .query_batch(QueryBatchPointsBuilder::new(
            DOCS,
            vec![
                QueryPointsBuilder::new(DOCS)
                    .query(vec![0.0, 0.0])
                    .limit(1)
                    .build(),
                QueryPointsBuilder::new(DOCS)
                    .query(vec![24.0, 0.0])
                    .limit(1)
                    .build(),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(batch.result.len(), 2);
    assert_eq!(batch.result[1].result[0].id, Some(24.into()));

    let got = client
        .get(GetPointsBuilder::new(DOCS, vec![7.into()]).with_payload(true))
        .await
        .unwrap();
    assert_eq!(
        got.result[0].payload["lang"].as_str().map(String::as_str),
        Some("de")
    );

    let page = client
        .scroll(ScrollPointsBuilder::new(DOCS).limit(10))
        .await
        .unwrap();
    assert_eq!(page.result.len(), 10);
    assert!(page.next_page_offset.is_some());

    let counted = client
        .count(CountPointsBuilder::new(DOCS).exact(true))
        .await
        .unwrap();
    assert_eq!(counted.result.unwrap().count, 25);

    client
        .set_payload(
            SetPayloadPointsBuilder::new(DOCS, Payload::try_from(json!({"seen": true})).unwrap())
                .points_selector(PointsIdsList {
                    ids: vec![1.into()],
                })
                .wait(true),
        )
        .await
        .unwrap();
    client
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(DOCS, "lang", FieldType::Keyword).wait(true),
        )
        .await
        .unwrap();
    let facets = client
        .facet(FacetCountsBuilder::new(DOCS, "lang").exact(true))
        .await
        .unwrap();
    assert_eq!(facets.hits.len(), 2);

    client
        .delete(
            DeletePointsBuilder::new(DOCS)
                .points(PointsIdsList {
                    ids: vec![0.into()],
                })
                .wait(true),
        )
        .await
        .unwrap();
    let info = client
        .collection_info(GetCollectionInfoRequest {
            collection_name: DOCS.into(),
        })
        .await
        .unwrap();
    assert_eq!(info.into_inner().result.unwrap().points_count, Some(24));
    let listed = client
        .list_collections(ListCollectionsRequest {})
        .await
        .unwrap();
    assert_eq!(listed.collections.len(), 1);
    let exists = client
        .collection_exists(CollectionExistsRequest {
            collection_name: DOCS.into(),
        })
        .await
        .unwrap();
    assert!(exists.result.unwrap().exists);
    let health = client.health_check(HealthCheckRequest {}).await.unwrap();
    assert!(!health.version.is_empty());

    client
        .delete_collection(DeleteCollectionBuilder::new(DOCS))
        .await
        .unwrap();
    let error = client
        .count(CountPointsBuilder::new(DOCS))
        .await
        .expect_err("the collection is gone");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(
        stack.breaker().snapshot().failures,
        0,
        "NotFound does not count"
    );
}

#[tokio::test]
async fn scroll_all_pages_through_every_point_one_call_per_page() {
    let server = TestServer::start().await.unwrap();
    let client = stack(&server).await.client();
    docs(&client).await;
    server.calls().reset();

    let points: Vec<_> = client
        .scroll_all(ScrollPointsBuilder::new(DOCS).limit(10))
        .try_collect()
        .await
        .unwrap();
    let mut ids: Vec<_> = points.iter().map(|p| p.id.clone().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 25, "every point once");
    assert_eq!(
        server.calls().count(Rpc::Scroll, DOCS),
        3,
        "pages of 10, 10 and 5"
    );

    // An error ends the stream with it.
    server.set_faults(
        FaultRule::new(Fault::invalid_argument())
            .rpc(Rpc::Scroll)
            .after(1),
    );
    let outcome: Result<Vec<_>, VectorError> = client
        .scroll_all(ScrollPointsBuilder::new(DOCS).limit(10))
        .try_collect()
        .await;
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn a_per_call_timeout_bounds_that_call_only() {
    let server = TestServer::start().await.unwrap();
    let client = stack(&server).await.client();
    docs(&client).await;
    server.set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Count));

    let started = Instant::now();
    let error = client
        .with_timeout(Duration::from_millis(200))
        .count(CountPointsBuilder::new(DOCS))
        .await
        .expect_err("the server never answers");
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "bounded by the call's 200 ms, not the profile's 5 s: {took:?}"
    );
    // The original client keeps the stack's deadline.
    client
        .search(SearchPointsBuilder::new(DOCS, vec![0.0, 0.0], 1))
        .await
        .unwrap();
}

/// A user's own layer: counts the requests that pass through it.
#[derive(Clone)]
pub(crate) struct Counting(pub(crate) Arc<AtomicUsize>);

#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S> Layer<S> for Counting {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            seen: self.0.clone(),
        }
    }
}

impl<S: Service<VectorRequest>> Service<VectorRequest> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> S::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}

#[tokio::test]
async fn hooks_see_each_call_once_around_it_and_each_attempt_below_the_retry() {
    let server = TestServer::start().await.unwrap();
    let (calls, attempts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stack = QdrantStack::builder()
        .endpoint(server.url())
        .profile(Profile::Testing)
        .retry(RetryPolicy::default().with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(3, Duration::from_millis(10)),
        ))
        .around_call(Counting(calls.clone()))
        .per_attempt(Counting(attempts.clone()))
        .build()
        .unwrap();
    let mut service = stack.service();
    let create: VectorRequest = CreateCollectionBuilder::new(DOCS)
        .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
        .into();
    service.ready().await.unwrap().call(create).await.unwrap();

    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(2),
    );
    let search: VectorRequest = SearchPointsBuilder::new(DOCS, vec![1.0, 0.0], 1).into();
    let answer = service.ready().await.unwrap().call(search).await.unwrap();
    assert!(matches!(answer, VectorResponse::Search(_)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "create + search, once each"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1 + 3,
        "the search's three attempts"
    );
}

#[tokio::test]
async fn the_stack_works_behind_a_buffer_and_across_tasks() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server).await;
    docs(&stack.client()).await;
    let buffered = tower::buffer::Buffer::new(stack.service(), 64);
    let client = Client::new(buffered);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .search(SearchPointsBuilder::new(DOCS, vec![i as f32, 0.0], 1))
                    .await
                    .map(|found| found.result[0].id.clone())
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), Some((i as u64).into()));
    }
}

#[tokio::test]
async fn a_bad_setting_is_named_before_anything_runs() {
    let error = QdrantStack::builder()
        .endpoint("not a url")
        .build()
        .expect_err("no such endpoint");
    assert!(error.to_string().contains("endpoint"), "{error}");
    let error = QdrantStack::builder()
        .endpoint("http://127.0.0.1:1")
        .connections(0)
        .build()
        .expect_err("zero connections");
    assert!(error.to_string().contains("connections"), "{error}");
}
