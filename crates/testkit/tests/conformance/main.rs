//! The conformance suite: the testkit server as any Qdrant client sees it. Every request goes
//! through qdrant-client's generated tonic clients (or its high-level `Qdrant` client) and is
//! built with qdrant-client's builders; the same cases, with the same assertions, run against
//! the embedded server and, with `QDRANT_URL` set (e.g. `http://localhost:6334`, plus
//! `QDRANT_API_KEY` if needed), against that real Qdrant:
//!
//! ```sh
//! QDRANT_URL=http://localhost:6334 cargo test -p qdrant-tower-testkit --test conformance
//! ```
//!
//! Tests of testkit-only behaviour (unimplemented RPCs, persistence, restart, fault injection)
//! check `Target::is_testkit` and return early against a real Qdrant.
//!
//! One binary, modules by area, so the engine is linked once.

// qdrant-client deprecates `search`, `search_batch` and `recommend` in favour of `query`, but the
// RPCs remain in Qdrant's API and the testkit serves (or refuses) them like Qdrant does.
#![allow(deprecated)]

mod client;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use qdrant_client::Payload;
use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::qdrant_client::QdrantClient;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    ClearPayloadPointsBuilder, CollectionExistsRequest, CollectionStatus, Condition,
    CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeleteCollectionBuilder, DeletePayloadPointsBuilder, DeletePointsBuilder, Distance, FieldType,
    Filter, GetCollectionInfoRequest, GetPointsBuilder, HealthCheckRequest, ListCollectionsRequest,
    ListValue, NamedVectors, PayloadIncludeSelector, PayloadSchemaType, PointId, PointStruct,
    PointsIdsList, Query, QueryPointsBuilder, Range, RetrievedPoint, ScoredPoint,
    ScrollPointsBuilder, SearchBatchPointsBuilder, SearchPointsBuilder, SetPayloadPointsBuilder,
    Struct, UpsertPointsBuilder, Value, ValuesCount, VectorParamsBuilder, VectorsConfigBuilder,
    VectorsOutput, point_id::PointIdOptions, vector_output, vectors_output::VectorsOptions,
};
use qdrant_client::qdrant::{
    Disabled, QuantizationConfigDiff, UpdateCollection, quantization_config_diff,
};
use qdrant_tower_testkit::TestServer;
use serde_json::{Value as Json, json};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Upper bound of any single RPC, so a hang fails the test instead of stalling the binary.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A full snapshot snapshots every collection of a server, and on a shared real Qdrant its
/// collection snapshots show up in other tests' snapshot lists while it runs: the full snapshot
/// test holds this for writing, tests that expect an exact snapshot list for reading.
static FULL_SNAPSHOT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

mod everyday;
mod points;

// ---------------------------------------------------------------------------------------------
// Harness

/// The channel the generated clients use: every request carries the target's API key, if any.
type Conn = InterceptedService<Channel, ApiKey>;

/// Sends an API key as the `api-key` metadata entry, as qdrant-client's `MetadataInterceptor`
/// does. No `Debug`: the key must not reach any output.
#[derive(Clone)]
struct ApiKey(Option<MetadataValue<Ascii>>);

impl ApiKey {
    /// `QDRANT_API_KEY` when it is set and not empty.
    fn from_env() -> Self {
        Self(Self::env_string().map(|key| {
            let mut value = MetadataValue::try_from(key)
                .expect("QDRANT_API_KEY must be printable ASCII (its value is not shown)");
            value.set_sensitive(true);
            value
        }))
    }

    /// `QDRANT_API_KEY` when it is set and not empty, as a string (for the high-level client).
    fn env_string() -> Option<String> {
        std::env::var("QDRANT_API_KEY")
            .ok()
            .filter(|key| !key.is_empty())
    }
}

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("api-key", key.clone());
        }
        Ok(request)
    }
}

/// Where the tests send their requests: a fresh `TestServer`, or the Qdrant at `QDRANT_URL`
/// (with `QDRANT_API_KEY`, if set, on every request).
struct Target {
    channel: Conn,
    server: Option<TestServer>,
}

impl Target {
    async fn new() -> Self {
        match std::env::var("QDRANT_URL") {
            Ok(url) if !url.is_empty() => Self {
                channel: connect_with(url, ApiKey::from_env()).await,
                server: None,
            },
            _ => {
                let server = TestServer::start().await.expect("test server starts");
                Self {
                    channel: connect(server.url()).await,
                    server: Some(server),
                }
            }
        }
    }

    fn is_testkit(&self) -> bool {
        self.server.is_some()
    }

    fn collections(&self) -> CollectionsClient<Conn> {
        CollectionsClient::new(self.channel.clone())
    }

    fn points(&self) -> PointsClient<Conn> {
        PointsClient::new(self.channel.clone())
    }

    /// Creates a collection with a unique name starting with `prefix`.
    async fn create(&self, prefix: &str, builder: CreateCollectionBuilder) -> String {
        let name = unique(prefix);
        let mut request = builder.build();
        request.collection_name = name.clone();
        let created = self.collections().create(request).await.expect("create");
        assert!(created.into_inner().result);
        name
    }

    /// A unique collection with one unnamed `dim`-dimensional vector.
    async fn create_plain(&self, prefix: &str, dim: u64, distance: Distance) -> String {
        self.create(
            prefix,
            CreateCollectionBuilder::new("")
                .vectors_config(VectorParamsBuilder::new(dim, distance)),
        )
        .await
    }

    async fn drop_collection(&self, name: &str) {
        let deleted = self
            .collections()
            .delete(DeleteCollectionBuilder::new(name).build())
            .await
            .expect("delete collection");
        assert!(deleted.into_inner().result);
    }

    async fn upsert(&self, collection: &str, points: Vec<PointStruct>) {
        self.points()
            .upsert(
                UpsertPointsBuilder::new(collection, points)
                    .wait(true)
                    .build(),
            )
            .await
            .expect("upsert");
    }

    async fn count(&self, collection: &str, filter: Option<Filter>) -> u64 {
        let mut request = CountPointsBuilder::new(collection).exact(true);
        if let Some(filter) = filter {
            request = request.filter(filter);
        }
        self.points()
            .count(request.build())
            .await
            .expect("count")
            .into_inner()
            .result
            .expect("count result")
            .count
    }

    /// Ids of the points a filtered search returns, sorted.
    async fn search_ids(&self, collection: &str, filter: Filter) -> Vec<u64> {
        let request = SearchPointsBuilder::new(collection, vec![1.0, 1.0, 1.0, 1.0], 100)
            .filter(filter)
            .build();
        let hits = self.points().search(request).await.expect("search");
        let mut ids = num_ids(&hits.into_inner().result);
        ids.sort_unstable();
        ids
    }
}

/// A channel to a testkit server, which needs no API key.
async fn connect(url: String) -> Conn {
    connect_with(url, ApiKey(None)).await
}

async fn connect_with(url: String, key: ApiKey) -> Conn {
    let channel = Channel::from_shared(url.clone())
        .unwrap_or_else(|err| panic!("{url:?} is not a valid URL: {err}"))
        .timeout(RPC_TIMEOUT)
        .connect_timeout(RPC_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"));
    InterceptedService::new(channel, key)
}

fn unique(prefix: &str) -> String {
    format!("testkit_{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A protobuf `Value` from JSON (qdrant-client's own conversion needs its `serde` feature).
fn pb(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(flag) => Kind::BoolValue(flag),
        Json::Number(number) => match number.as_i64() {
            Some(int) => Kind::IntegerValue(int),
            None => Kind::DoubleValue(number.as_f64().expect("finite")),
        },
        Json::String(text) => Kind::StringValue(text),
        Json::Array(values) => Kind::ListValue(ListValue {
            values: values.into_iter().map(pb).collect(),
        }),
        Json::Object(object) => Kind::StructValue(Struct {
            fields: object.into_iter().map(|(k, v)| (k, pb(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

fn payload(json: Json) -> Payload {
    let Json::Object(object) = json else {
        panic!("a payload is a JSON object")
    };
    object
        .into_iter()
        .map(|(key, value)| (key, pb(value)))
        .collect::<HashMap<String, Value>>()
        .into()
}

fn to_json(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(flag)) => Json::Bool(flag),
        Some(Kind::IntegerValue(int)) => json!(int),
        Some(Kind::DoubleValue(double)) => json!(double),
        Some(Kind::StringValue(text)) => Json::String(text),
        Some(Kind::ListValue(list)) => Json::Array(list.values.into_iter().map(to_json).collect()),
        Some(Kind::StructValue(object)) => payload_json(object.fields),
    }
}

fn payload_json(fields: HashMap<String, Value>) -> Json {
    Json::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect())
}

fn num_id(id: Option<&PointId>) -> u64 {
    match id.and_then(|id| id.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(num)) => *num,
        other => panic!("expected a numeric id, got {other:?}"),
    }
}

fn num_ids(points: &[ScoredPoint]) -> Vec<u64> {
    points.iter().map(|p| num_id(p.id.as_ref())).collect()
}

fn record_ids(points: &[RetrievedPoint]) -> Vec<u64> {
    points.iter().map(|p| num_id(p.id.as_ref())).collect()
}

fn dense(vectors: Option<&VectorsOutput>, name: &str) -> Vec<f32> {
    let vector = match vectors.and_then(|v| v.vectors_options.as_ref()) {
        Some(VectorsOptions::Vector(vector)) if name.is_empty() => vector.clone(),
        Some(VectorsOptions::Vectors(named)) => named.vectors[name].clone(),
        other => panic!("no vector `{name}` in {other:?}"),
    };
    match vector.into_vector() {
        vector_output::Vector::Dense(dense) => dense.data,
        other => panic!("expected a dense vector, got {other:?}"),
    }
}

/// A small library: five books with rich payloads, one-hot-ish vectors.
async fn seed_library(target: &Target, prefix: &str) -> String {
    let name = target.create_plain(prefix, 4, Distance::Dot).await;
    let books = vec![
        PointStruct::new(
            1,
            vec![1.0, 0.0, 0.0, 0.0],
            payload(json!({
                "title": "Dune", "genre": "sf", "year": 1965, "rating": 4.5, "in_print": true,
                "tags": ["classic", "desert"], "author": {"name": "Herbert", "country": "US"},
                "reviews": [{"user": "ann", "score": 5}, {"user": "bob", "score": 3}],
                "note": null,
            })),
        ),
        PointStruct::new(
            2,
            vec![0.0, 1.0, 0.0, 0.0],
            payload(json!({
                "title": "Emma", "genre": "romance", "year": 1815, "rating": 3.9,
                "in_print": true, "tags": ["classic"],
                "author": {"name": "Austen", "country": "UK"},
                "reviews": [{"user": "ann", "score": 2}, {"user": "dan", "score": 5}],
            })),
        ),
        PointStruct::new(
            3,
            vec![0.0, 0.0, 1.0, 0.0],
            payload(json!({
                "title": "Neuromancer", "genre": "sf", "year": 1984, "rating": 4.1,
                "in_print": false, "tags": ["cyberpunk"],
                "author": {"name": "Gibson", "country": "US"}, "reviews": [],
            })),
        ),
        PointStruct::new(
            4,
            vec![0.0, 0.0, 0.0, 1.0],
            payload(json!({
                "title": "Solaris", "genre": "sf", "year": 1961, "rating": 4.0,
                "in_print": true, "tags": [], "author": {"name": "Lem", "country": "PL"},
                "note": "translated",
            })),
        ),
        PointStruct::new(
            5,
            vec![0.5, 0.5, 0.5, 0.5],
            payload(json!({
                "title": "Ulysses", "genre": "modernism", "year": 1922, "rating": 3.5,
                "in_print": false, "author": {"name": "Joyce", "country": "IE"},
                "reviews": [{"user": "cid", "score": 4}], "note": null,
            })),
        ),
    ];
    target.upsert(&name, books).await;
    name
}

fn range(gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64>) -> Range {
    Range { lt, gt, gte, lte }
}

// ---------------------------------------------------------------------------------------------
// Health and collections

#[tokio::test]
async fn health_check_answers_qdrant_title_and_a_version_the_client_accepts() {
    let target = Target::new().await;
    let reply = QdrantClient::new(target.channel.clone())
        .health_check(HealthCheckRequest {})
        .await
        .expect("health check")
        .into_inner();

    assert_eq!(reply.title, "qdrant - vector search engine");
    let mut parts = reply.version.split('.').map(|p| p.parse::<i64>().ok());
    assert_eq!(
        parts.next(),
        Some(Some(1)),
        "major version of {}",
        reply.version
    );
    if target.is_testkit() {
        // qdrant-client 1.20 accepts the same major and a minor at most one apart.
        let minor = parts.next().flatten().expect("minor version");
        assert!((minor - 20).abs() <= 1, "version {}", reply.version);
        assert!(
            reply
                .commit
                .unwrap_or_default()
                .contains("qdrant-tower-testkit")
        );
    }
}

#[tokio::test]
async fn collection_lifecycle_is_visible_through_exists_list_get_and_delete() {
    let target = Target::new().await;
    let name = target.create_plain("lifecycle", 4, Distance::Cosine).await;
    let mut collections = target.collections();

    let exists = collections
        .collection_exists(CollectionExistsRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(exists.result.unwrap().exists);

    let listed = collections
        .list(ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.collections.iter().any(|c| c.name == name));

    target
        .upsert(
            &name,
            vec![
                PointStruct::new(1, vec![1.0, 0.0, 0.0, 0.0], Payload::new()),
                PointStruct::new(2, vec![0.0, 1.0, 0.0, 0.0], Payload::new()),
            ],
        )
        .await;
    let info = collections
        .get(GetCollectionInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(info.status, CollectionStatus::Green as i32);
    assert_eq!(info.points_count, Some(2));
    let params = info.config.unwrap().params.unwrap();
    let Some(qdrant_client::qdrant::vectors_config::Config::Params(vectors)) =
        params.vectors_config.unwrap().config
    else {
        panic!("expected a single unnamed vector config");
    };
    assert_eq!(vectors.size, 4);
    assert_eq!(vectors.distance, Distance::Cosine as i32);

    target.drop_collection(&name).await;
    let exists = collections
        .collection_exists(CollectionExistsRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!exists.result.unwrap().exists);
}

#[tokio::test]
async fn requests_on_a_missing_collection_are_not_found_with_qdrant_wording() {
    let target = Target::new().await;
    let name = unique("missing");
    let expected = format!("Not found: Collection `{name}` doesn't exist!");

    let status = target
        .collections()
        .get(GetCollectionInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), expected);

    let status = target
        .points()
        .search(SearchPointsBuilder::new(&name, vec![1.0, 0.0], 3).build())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), expected);

    let status = target
        .points()
        .upsert(
            UpsertPointsBuilder::new(&name, vec![PointStruct::new(1, vec![1.0], Payload::new())])
                .wait(true)
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), expected);
}

#[tokio::test]
async fn creating_a_collection_twice_is_rejected_as_already_existing() {
    let target = Target::new().await;
    let name = target.create_plain("twice", 4, Distance::Dot).await;

    let status = target
        .collections()
        .create(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(8, Distance::Cosine))
                .build(),
        )
        .await
        .unwrap_err();
    // Qdrant answers ALREADY_EXISTS since 1.8 (INVALID_ARGUMENT before), still worded as a
    // wrong input.
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.message(),
        format!("Wrong input: Collection `{name}` already exists!")
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn vectors_of_the_wrong_dimension_or_name_are_invalid_arguments_and_change_nothing() {
    let target = Target::new().await;
    let name = target.create_plain("dimension", 4, Distance::Dot).await;
    let mut points = target.points();

    let good = PointStruct::new(1, vec![1.0, 0.0, 0.0, 0.0], Payload::new());
    let short = PointStruct::new(2, vec![1.0, 2.0, 3.0], Payload::new());
    let status = points
        .upsert(
            UpsertPointsBuilder::new(&name, vec![good, short])
                .wait(true)
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Wrong input: Vector dimension error: expected dim: 4, got 3"
    );
    assert_eq!(
        target.count(&name, None).await,
        0,
        "no point of the batch is stored"
    );

    let status = points
        .search(SearchPointsBuilder::new(&name, vec![1.0, 0.0, 0.0], 3).build())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Wrong input: Vector dimension error: expected dim: 4, got 3"
    );

    let status = points
        .search(
            SearchPointsBuilder::new(&name, vec![1.0, 0.0, 0.0, 0.0], 3)
                .vector_name("nope")
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Wrong input: Not existing vector name error: nope"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Points

#[tokio::test]
async fn upserted_points_come_back_with_numeric_and_uuid_ids_vectors_and_nested_payload() {
    let target = Target::new().await;
    let name = target.create_plain("roundtrip", 4, Distance::Dot).await;
    let uuid = "0d4c5c38-8f9f-4e0a-9d0e-6d1c2b3a4f5e";
    let document = json!({
        "title": "Dune",
        "year": 1965,
        "delta": -42,
        "rating": 4.25,
        "in_print": true,
        "missing": null,
        "tags": ["sf", 7, false, null, {"deep": [1.5, "x"]}],
        "author": {"name": "Herbert", "born": {"year": 1920, "city": "Tacoma"}},
        "empty_list": [],
        "empty_object": {},
    });
    target
        .upsert(
            &name,
            vec![
                PointStruct::new(7, vec![0.5, -1.0, 2.0, 0.25], payload(document.clone())),
                PointStruct::new(
                    uuid,
                    vec![1.0, 2.0, 3.0, 4.0],
                    payload(json!({"kind": "uuid"})),
                ),
            ],
        )
        .await;

    let got = target
        .points()
        .get(
            GetPointsBuilder::new(&name, vec![PointId::from(7), PointId::from(uuid)])
                .with_payload(true)
                .with_vectors(true)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(got.len(), 2);
    let by_num = got
        .iter()
        .find(|p| {
            matches!(
                p.id.as_ref().unwrap().point_id_options,
                Some(PointIdOptions::Num(7))
            )
        })
        .expect("point 7");
    assert_eq!(payload_json(by_num.payload.clone()), document);
    assert_eq!(
        dense(by_num.vectors.as_ref(), ""),
        vec![0.5, -1.0, 2.0, 0.25]
    );
    let by_uuid = got
        .iter()
        .find(|p| {
            p.id.as_ref().unwrap().point_id_options == Some(PointIdOptions::Uuid(uuid.into()))
        })
        .expect("uuid point");
    assert_eq!(
        payload_json(by_uuid.payload.clone()),
        json!({"kind": "uuid"})
    );
    assert_eq!(
        dense(by_uuid.vectors.as_ref(), ""),
        vec![1.0, 2.0, 3.0, 4.0]
    );

    // Selectors: only the included key, no vectors; unknown ids are skipped.
    let got = target
        .points()
        .get(
            GetPointsBuilder::new(&name, vec![PointId::from(7), PointId::from(404)])
                .with_payload(PayloadIncludeSelector::new(vec!["title".to_string()]))
                .with_vectors(false)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(record_ids(&got), vec![7]);
    assert_eq!(
        payload_json(got[0].payload.clone()),
        json!({"title": "Dune"})
    );
    assert!(got[0].vectors.is_none());
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn named_vectors_are_stored_and_searched_by_name() {
    let target = Target::new().await;
    let mut config = VectorsConfigBuilder::default();
    config
        .add_named_vector_params("text", VectorParamsBuilder::new(2, Distance::Dot))
        .add_named_vector_params("image", VectorParamsBuilder::new(3, Distance::Euclid));
    let name = target
        .create(
            "named",
            CreateCollectionBuilder::new("").vectors_config(config),
        )
        .await;
    let point = |id: u64, text: Vec<f32>, image: Vec<f32>| {
        PointStruct::new(
            id,
            NamedVectors::from(vec![("text", text), ("image", image)]),
            Payload::new(),
        )
    };
    target
        .upsert(
            &name,
            vec![
                point(1, vec![1.0, 0.0], vec![0.0, 0.0, 9.0]),
                point(2, vec![0.0, 1.0], vec![0.0, 0.0, 0.0]),
            ],
        )
        .await;
    let mut points = target.points();

    let by_text = points
        .search(
            SearchPointsBuilder::new(&name, vec![1.0, 0.1], 1)
                .vector_name("text")
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(num_ids(&by_text), vec![1]);
    let by_image = points
        .search(
            SearchPointsBuilder::new(&name, vec![0.0, 0.0, 1.0], 1)
                .vector_name("image")
                .with_vectors(true)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(num_ids(&by_image), vec![2]);
    assert_eq!(dense(by_image[0].vectors.as_ref(), "text"), vec![0.0, 1.0]);
    assert_eq!(
        dense(by_image[0].vectors.as_ref(), "image"),
        vec![0.0, 0.0, 0.0]
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Filters

#[tokio::test]
async fn match_filters_select_keywords_integers_booleans_any_and_except() {
    let target = Target::new().await;
    let name = seed_library(&target, "match").await;
    let cases: Vec<(&str, Filter, Vec<u64>)> = vec![
        (
            "keyword",
            Filter::must([Condition::matches("genre", "sf".to_string())]),
            vec![1, 3, 4],
        ),
        (
            "integer",
            Filter::must([Condition::matches("year", 1984)]),
            vec![3],
        ),
        (
            "bool",
            Filter::must([Condition::matches("in_print", false)]),
            vec![3, 5],
        ),
        (
            "any keyword",
            Filter::must([Condition::matches("genre", ["romance", "modernism"])]),
            vec![2, 5],
        ),
        (
            "any integer",
            Filter::must([Condition::matches("year", vec![1965_i64, 1815])]),
            vec![1, 2],
        ),
        (
            "except",
            Filter::must([Condition::matches(
                "genre",
                !qdrant_client::qdrant::r#match::MatchValue::from(["sf"]),
            )]),
            vec![2, 5],
        ),
        (
            "nested key",
            Filter::must([Condition::matches("author.country", "US".to_string())]),
            vec![1, 3],
        ),
        (
            "array element",
            Filter::must([Condition::matches("tags[]", "classic".to_string())]),
            vec![1, 2],
        ),
    ];
    for (case, filter, expected) in cases {
        assert_eq!(target.search_ids(&name, filter).await, expected, "{case}");
    }
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn range_id_emptiness_and_count_filters_select_the_right_points() {
    let target = Target::new().await;
    let name = seed_library(&target, "range").await;
    let cases: Vec<(&str, Filter, Vec<u64>)> = vec![
        (
            "float gte",
            Filter::must([Condition::range(
                "rating",
                range(None, Some(4.0), None, None),
            )]),
            vec![1, 3, 4],
        ),
        (
            "float lt",
            Filter::must([Condition::range(
                "rating",
                range(None, None, Some(4.0), None),
            )]),
            vec![2, 5],
        ),
        (
            "integer gt and lte",
            Filter::must([Condition::range(
                "year",
                range(Some(1900.0), None, None, Some(1984.0)),
            )]),
            vec![1, 3, 4, 5],
        ),
        (
            "has_id",
            Filter::must([Condition::has_id([2, 4, 99])]),
            vec![2, 4],
        ),
        (
            "is_empty",
            Filter::must([Condition::is_empty("tags")]),
            vec![4, 5],
        ),
        (
            "is_null",
            Filter::must([Condition::is_null("note")]),
            vec![1, 5],
        ),
        (
            "values_count",
            Filter::must([Condition::values_count(
                "tags",
                ValuesCount {
                    gte: Some(2),
                    ..Default::default()
                },
            )]),
            vec![1],
        ),
    ];
    for (case, filter, expected) in cases {
        assert_eq!(target.search_ids(&name, filter).await, expected, "{case}");
    }
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn boolean_clauses_and_nested_conditions_combine_as_qdrant_does() {
    let target = Target::new().await;
    let name = seed_library(&target, "logic").await;
    let sf = || Condition::matches("genre", "sf".to_string());
    let cases: Vec<(&str, Filter, Vec<u64>)> = vec![
        (
            "must and must_not",
            Filter {
                must: vec![sf()],
                must_not: vec![Condition::matches("in_print", true)],
                ..Default::default()
            },
            vec![3],
        ),
        (
            "should",
            Filter::should([
                Condition::matches("year", 1815),
                Condition::matches("author.country", "PL".to_string()),
            ]),
            vec![2, 4],
        ),
        (
            "min_should",
            Filter::min_should(
                2,
                [
                    sf(),
                    Condition::matches("in_print", true),
                    Condition::range("rating", range(None, Some(4.4), None, None)),
                ],
            ),
            vec![1, 4],
        ),
        (
            "nested filter condition",
            Filter::must([Condition::from(Filter::should([
                Condition::matches("year", 1922),
                Condition::matches("year", 1984),
            ]))]),
            vec![3, 5],
        ),
        (
            // Flat conditions on an array of objects may match different elements...
            "flat array conditions",
            Filter::must([
                Condition::matches("reviews[].user", "ann".to_string()),
                Condition::range("reviews[].score", range(None, Some(4.0), None, None)),
            ]),
            vec![1, 2],
        ),
        (
            // ...a nested condition needs one element to match them all.
            "nested object condition",
            Filter::must([Condition::nested(
                "reviews",
                Filter::must([
                    Condition::matches("user", "ann".to_string()),
                    Condition::range("score", range(None, Some(4.0), None, None)),
                ]),
            )]),
            vec![1],
        ),
    ];
    for (case, filter, expected) in cases {
        assert_eq!(target.search_ids(&name, filter).await, expected, "{case}");
    }
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn payload_indexes_are_reported_and_keep_filters_exact() {
    let target = Target::new().await;
    let name = seed_library(&target, "index").await;
    let mut points = target.points();
    for (field, field_type) in [
        ("genre", FieldType::Keyword),
        ("year", FieldType::Integer),
        ("rating", FieldType::Float),
    ] {
        points
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(&name, field, field_type)
                    .wait(true)
                    .build(),
            )
            .await
            .expect("create field index");
    }

    let info = target
        .collections()
        .get(GetCollectionInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(
        info.payload_schema["genre"].data_type,
        PayloadSchemaType::Keyword as i32
    );
    assert_eq!(
        info.payload_schema["year"].data_type,
        PayloadSchemaType::Integer as i32
    );
    assert_eq!(
        info.payload_schema["rating"].data_type,
        PayloadSchemaType::Float as i32
    );

    let filter = Filter::must([
        Condition::matches("genre", "sf".to_string()),
        Condition::range("year", range(Some(1962.0), None, None, None)),
    ]);
    assert_eq!(target.search_ids(&name, filter).await, vec![1, 3]);
    let filter = Filter::must([Condition::range(
        "rating",
        range(None, None, None, Some(3.9)),
    )]);
    assert_eq!(target.search_ids(&name, filter.clone()).await, vec![2, 5]);
    assert_eq!(target.count(&name, Some(filter)).await, 2);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Search, query, scroll, count

#[tokio::test]
async fn search_batch_answers_each_search_in_order() {
    let target = Target::new().await;
    let name = seed_library(&target, "batch").await;
    let searches = vec![
        SearchPointsBuilder::new(&name, vec![0.0, 1.0, 0.0, 0.0], 1).build(),
        // Among the sf books: 1 scores 1.0, 3 scores 0.5, 4 scores 0.
        SearchPointsBuilder::new(&name, vec![1.0, 0.0, 0.5, 0.0], 2)
            .filter(Filter::must([Condition::matches(
                "genre",
                "sf".to_string(),
            )]))
            .build(),
        SearchPointsBuilder::new(&name, vec![0.0, 0.0, 0.0, 1.0], 1).build(),
    ];
    let batches = target
        .points()
        .search_batch(SearchBatchPointsBuilder::new(&name, searches).build())
        .await
        .unwrap()
        .into_inner()
        .result;
    let ids: Vec<Vec<u64>> = batches.iter().map(|b| num_ids(&b.result)).collect();
    assert_eq!(ids, vec![vec![2], vec![1, 3], vec![4]]);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn query_nearest_honours_filter_limit_offset_threshold_and_selectors() {
    let target = Target::new().await;
    let name = seed_library(&target, "query").await;
    let mut points = target.points();
    // Dot scores: 1 → 1.0, 5 → 0.875, 2 → 0.5, 3 → 0.25, 4 → 0.0.
    let query =
        || QueryPointsBuilder::new(&name).query(Query::new_nearest(vec![1.0, 0.5, 0.25, 0.0]));

    let run = |request: QueryPointsBuilder| {
        let mut points = points.clone();
        async move {
            points
                .query(request.build())
                .await
                .expect("query")
                .into_inner()
                .result
        }
    };
    assert_eq!(num_ids(&run(query().limit(2)).await), vec![1, 5]);
    assert_eq!(num_ids(&run(query().limit(2).offset(1)).await), vec![5, 2]);
    assert_eq!(
        num_ids(&run(query().score_threshold(0.4)).await),
        vec![1, 5, 2]
    );
    let sf = Filter::must([Condition::matches("genre", "sf".to_string())]);
    assert_eq!(num_ids(&run(query().filter(sf)).await), vec![1, 3, 4]);

    let hits = run(query()
        .limit(1)
        .with_payload(PayloadIncludeSelector::new(vec!["title".to_string()]))
        .with_vectors(true))
    .await;
    assert_eq!(num_ids(&hits), vec![1]);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert_eq!(
        payload_json(hits[0].payload.clone()),
        json!({"title": "Dune"})
    );
    assert_eq!(
        dense(hits[0].vectors.as_ref(), ""),
        vec![1.0, 0.0, 0.0, 0.0]
    );

    // Without `with_payload`, a query returns no payload, as in Qdrant.
    let bare = points
        .query(query().limit(1).build())
        .await
        .unwrap()
        .into_inner()
        .result;
    assert!(bare[0].payload.is_empty());
    assert!(bare[0].vectors.is_none());
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn scroll_pages_through_every_point_with_next_page_offset() {
    let target = Target::new().await;
    let name = target.create_plain("scroll", 2, Distance::Dot).await;
    let all: Vec<PointStruct> = (1..=25_u64)
        .map(|id| {
            let parity = if id % 2 == 0 { "even" } else { "odd" };
            PointStruct::new(id, vec![id as f32, 1.0], payload(json!({"parity": parity})))
        })
        .collect();
    target.upsert(&name, all).await;

    let mut seen = Vec::new();
    let mut offset: Option<PointId> = None;
    let mut pages = 0;
    loop {
        let mut request = ScrollPointsBuilder::new(&name).limit(10);
        if let Some(offset) = offset.take() {
            request = request.offset(offset);
        }
        let page = target
            .points()
            .scroll(request.build())
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(record_ids(&page.result));
        assert!(
            page.result.iter().all(|p| !p.payload.is_empty()),
            "scroll returns payload by default"
        );
        match page.next_page_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
        assert!(pages < 10, "scroll does not terminate");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    let even = Filter::must([Condition::matches("parity", "even".to_string())]);
    let first = target
        .points()
        .scroll(
            ScrollPointsBuilder::new(&name)
                .filter(even.clone())
                .limit(5)
                .build(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record_ids(&first.result), vec![2, 4, 6, 8, 10]);
    assert_eq!(num_id(first.next_page_offset.as_ref()), 12);
    let second = target
        .points()
        .scroll(
            ScrollPointsBuilder::new(&name)
                .filter(even)
                .limit(5)
                .offset(12)
                .build(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record_ids(&second.result), vec![12, 14, 16, 18, 20]);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn count_is_exact_with_and_without_a_filter() {
    let target = Target::new().await;
    let name = seed_library(&target, "count").await;
    assert_eq!(target.count(&name, None).await, 5);
    let sf = Filter::must([Condition::matches("genre", "sf".to_string())]);
    assert_eq!(target.count(&name, Some(sf)).await, 3);
    let none = Filter::must([Condition::matches("genre", "poetry".to_string())]);
    assert_eq!(target.count(&name, Some(none)).await, 0);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Deletes and payload updates

#[tokio::test]
async fn delete_by_ids_and_by_filter_removes_exactly_those_points() {
    let target = Target::new().await;
    let name = seed_library(&target, "delete").await;
    let mut points = target.points();

    points
        .delete(
            DeletePointsBuilder::new(&name)
                .points(PointsIdsList::from(vec![2_u64, 404]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(target.count(&name, None).await, 4);

    points
        .delete(
            DeletePointsBuilder::new(&name)
                .points(Filter::must([Condition::matches("in_print", false)]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    let left = points
        .scroll(ScrollPointsBuilder::new(&name).build())
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(record_ids(&left), vec![1, 4]);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn set_overwrite_delete_and_clear_payload_change_only_what_they_target() {
    let target = Target::new().await;
    let name = target.create_plain("payload", 2, Distance::Dot).await;
    target
        .upsert(
            &name,
            vec![
                PointStruct::new(
                    1,
                    vec![1.0, 0.0],
                    payload(json!({"a": 1, "author": {"name": "X"}})),
                ),
                PointStruct::new(2, vec![0.0, 1.0], payload(json!({"a": 2, "b": "keep"}))),
                PointStruct::new(3, vec![1.0, 1.0], payload(json!({"a": 3, "c": true}))),
            ],
        )
        .await;
    let mut points = target.points();
    let read = |id: u64| {
        let mut points = target.points();
        let name = name.clone();
        async move {
            let got = points
                .get(
                    GetPointsBuilder::new(name, vec![PointId::from(id)])
                        .with_payload(true)
                        .build(),
                )
                .await
                .unwrap()
                .into_inner()
                .result;
            payload_json(got[0].payload.clone())
        }
    };

    // Set merges keys into point 1; with `key`, into a nested object.
    points
        .set_payload(
            SetPayloadPointsBuilder::new(&name, payload(json!({"color": "red"})))
                .points_selector(PointsIdsList::from(vec![1_u64]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    points
        .set_payload(
            SetPayloadPointsBuilder::new(&name, payload(json!({"born": 1920})))
                .points_selector(PointsIdsList::from(vec![1_u64]))
                .key("author")
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(
        read(1).await,
        json!({"a": 1, "color": "red", "author": {"name": "X", "born": 1920}})
    );

    // Set by filter reaches every matching point.
    points
        .set_payload(
            SetPayloadPointsBuilder::new(&name, payload(json!({"big": true})))
                .points_selector(Filter::must([Condition::range(
                    "a",
                    range(None, Some(2.0), None, None),
                )]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(read(2).await, json!({"a": 2, "b": "keep", "big": true}));
    assert_eq!(read(3).await, json!({"a": 3, "c": true, "big": true}));

    // Overwrite replaces the whole payload.
    points
        .overwrite_payload(
            SetPayloadPointsBuilder::new(&name, payload(json!({"only": "this"})))
                .points_selector(PointsIdsList::from(vec![2_u64]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(read(2).await, json!({"only": "this"}));

    // Delete removes top-level and nested keys.
    points
        .delete_payload(
            DeletePayloadPointsBuilder::new(
                &name,
                vec!["color".to_string(), "author.name".to_string()],
            )
            .points_selector(PointsIdsList::from(vec![1_u64]))
            .wait(true)
            .build(),
        )
        .await
        .unwrap();
    assert_eq!(read(1).await, json!({"a": 1, "author": {"born": 1920}}));

    // Clear empties the payload of the selected points only.
    points
        .clear_payload(
            ClearPayloadPointsBuilder::new(&name)
                .points(PointsIdsList::from(vec![3_u64]))
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(read(3).await, json!({}));
    assert_eq!(read(2).await, json!({"only": "this"}));
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn update_batch_applies_its_operations_in_order() {
    use qdrant_client::qdrant::points_update_operation::{
        DeletePoints, Operation, PointStructList, SetPayload, UpdateVectors,
    };
    use qdrant_client::qdrant::{PointVectors, PointsSelector, PointsUpdateOperation};

    let target = Target::new().await;
    let name = target.create_plain("update_batch", 2, Distance::Dot).await;
    let ids = |ids: Vec<u64>| {
        Some(PointsSelector {
            points_selector_one_of: Some(PointsIdsList::from(ids).into()),
        })
    };
    let operations = [
        Operation::Upsert(PointStructList {
            points: (1..=3_u64)
                .map(|id| PointStruct::new(id, vec![id as f32, 0.0], payload(json!({"id": id}))))
                .collect(),
            shard_key_selector: None,
            update_filter: None,
            update_mode: None,
        }),
        Operation::SetPayload(SetPayload {
            payload: payload(json!({"seen": true})).into(),
            points_selector: ids(vec![1]),
            shard_key_selector: None,
            key: None,
        }),
        Operation::DeletePoints(DeletePoints {
            points: ids(vec![2]),
            shard_key_selector: None,
        }),
        Operation::UpdateVectors(UpdateVectors {
            points: vec![PointVectors {
                id: Some(3.into()),
                vectors: Some(vec![0.0, 9.0].into()),
            }],
            shard_key_selector: None,
            update_filter: None,
        }),
    ]
    .map(|operation| PointsUpdateOperation {
        operation: Some(operation),
    });
    let results = target
        .points()
        .update_batch(
            qdrant_client::qdrant::UpdateBatchPointsBuilder::new(&name, operations.to_vec())
                .wait(true)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(results.len(), 4);

    let got = target
        .points()
        .get(
            GetPointsBuilder::new(&name, vec![1.into(), 2.into(), 3.into()])
                .with_payload(true)
                .with_vectors(true)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(record_ids(&got), vec![1, 3]);
    assert_eq!(
        payload_json(got[0].payload.clone()),
        json!({"id": 1, "seen": true})
    );
    assert_eq!(dense(got[1].vectors.as_ref(), ""), vec![0.0, 9.0]);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn facet_counts_the_values_of_an_indexed_keyword() {
    let target = Target::new().await;
    let name = seed_library(&target, "facet").await;
    target
        .points()
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "genre", FieldType::Keyword)
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    let hits = target
        .points()
        .facet(
            qdrant_client::qdrant::FacetCountsBuilder::new(&name, "genre")
                .exact(true)
                .build(),
        )
        .await
        .unwrap()
        .into_inner()
        .hits;
    let counts: HashMap<String, u64> = hits
        .into_iter()
        .map(|hit| match hit.value.and_then(|v| v.variant) {
            Some(qdrant_client::qdrant::facet_value::Variant::StringValue(value)) => {
                (value, hit.count)
            }
            other => panic!("expected a keyword facet, got {other:?}"),
        })
        .collect();
    let expected: HashMap<String, u64> = [
        ("sf".to_string(), 3),
        ("romance".to_string(), 1),
        ("modernism".to_string(), 1),
    ]
    .into();
    assert_eq!(counts, expected);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Testkit-only behaviour

#[tokio::test]
async fn a_feature_the_testkit_lacks_answers_unimplemented_naming_method_and_feature() {
    let target = Target::new().await;
    if !target.is_testkit() {
        return; // Real Qdrant implements it.
    }
    let name = target.create_plain("unimplemented", 2, Distance::Dot).await;
    // Quantization cannot be changed on a running qdrant-edge shard.
    let status = target
        .collections()
        .update(UpdateCollection {
            collection_name: name.clone(),
            quantization_config: Some(QuantizationConfigDiff {
                quantization: Some(quantization_config_diff::Quantization::Disabled(
                    Disabled {},
                )),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "qdrant-tower-testkit does not implement quantization_config in Collections/Update yet"
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn a_persistent_data_dir_keeps_collections_across_restarts() {
    if std::env::var_os("QDRANT_URL").is_some_and(|url| !url.is_empty()) {
        return; // Restarting is about the testkit's own storage.
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let target = Target {
        channel: connect(server.url()).await,
        server: Some(server),
    };
    let name = seed_library(&target, "persist").await;
    let Target { channel, server } = target;
    drop(channel);
    let server = server.unwrap();
    let first_addr = server.addr();
    server.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(first_addr).await.is_err(),
        "a shut-down server accepts no connections"
    );

    let server = TestServer::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let target = Target {
        channel: connect(server.url()).await,
        server: Some(server),
    };
    assert_eq!(target.count(&name, None).await, 5);
    let sf = Filter::must([Condition::matches("genre", "sf".to_string())]);
    assert_eq!(target.search_ids(&name, sf).await, vec![1, 3, 4]);
    target.drop_collection(&name).await;
    let names: BTreeSet<_> = target
        .collections()
        .list(ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(!names.contains(&name));
}

// ---------------------------------------------------------------------------------------------
// Collections beyond create/get/list/delete, aliases, cluster info, snapshots, restarts

mod collections;
mod server;

// ---------------------------------------------------------------------------------------------
// Fault injection (testkit only: these tests always start their own server)

mod faults {
    use std::time::Duration;

    use qdrant_client::Payload;
    use qdrant_client::qdrant::collections_client::CollectionsClient;
    use qdrant_client::qdrant::points_client::PointsClient;
    use qdrant_client::qdrant::{
        CountPointsBuilder, CreateCollectionBuilder, Distance, GetPointsBuilder, PointId,
        PointStruct, SearchPoints, SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
    };
    use qdrant_tower_testkit::TestServer;
    use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};
    use tokio::time::{Instant, sleep, sleep_until, timeout};
    use tonic::transport::Channel;
    use tonic::{Code, Status};

    /// Bound of every wait on the network, so a bug fails the test instead of stalling it.
    const WAIT: Duration = Duration::from_secs(5);
    const MS: Duration = Duration::from_millis(1);

    /// A fresh server with collections `a` and `b` (2-dim, dot), an empty call log, and a
    /// channel whose calls time out after `call_timeout`.
    struct Rig {
        server: TestServer,
        channel: Channel,
    }

    impl Rig {
        async fn new() -> Self {
            Rig::with_timeout(WAIT).await
        }

        async fn with_timeout(call_timeout: Duration) -> Self {
            let server = TestServer::start().await.expect("test server starts");
            let channel = Channel::from_shared(server.url())
                .expect("valid url")
                .timeout(call_timeout)
                .connect_timeout(WAIT)
                .connect()
                .await
                .expect("connect");
            let mut collections = CollectionsClient::new(channel.clone());
            for name in ["a", "b"] {
                collections
                    .create(
                        CreateCollectionBuilder::new(name)
                            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                            .build(),
                    )
                    .await
                    .expect("create");
            }
            server.calls().reset();
            Rig { server, channel }
        }

        fn points(&self) -> PointsClient<Channel> {
            PointsClient::new(self.channel.clone())
        }

        async fn count(&self, collection: &str) -> Result<u64, Status> {
            let request = CountPointsBuilder::new(collection).exact(true).build();
            let mut points = self.points();
            timeout(WAIT, points.count(request))
                .await
                .expect("count answers in time")
                .map(|reply| reply.into_inner().result.map_or(0, |result| result.count))
        }

        async fn search(&self, collection: &str, limit: u64) -> Result<usize, Status> {
            self.search_with(SearchPointsBuilder::new(collection, vec![1.0, 0.0], limit).build())
                .await
        }

        async fn search_with(&self, request: SearchPoints) -> Result<usize, Status> {
            let mut points = self.points();
            timeout(WAIT, points.search(request))
                .await
                .expect("search answers in time")
                .map(|reply| reply.into_inner().result.len())
        }

        async fn upsert(&self, collection: &str, id: u64) -> Result<(), Status> {
            let point = PointStruct::new(id, vec![1.0, 0.0], Payload::new());
            let request = UpsertPointsBuilder::new(collection, vec![point])
                .wait(true)
                .build();
            let mut points = self.points();
            timeout(WAIT, points.upsert(request))
                .await
                .expect("upsert answers in time")
                .map(drop)
        }

        /// Whether point `id` is stored, asked on a fresh connection.
        async fn stored(&self, collection: &str, id: u64) -> bool {
            let channel = Channel::from_shared(self.server.url())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let request = GetPointsBuilder::new(collection, vec![PointId::from(id)]).build();
            let found = timeout(WAIT, PointsClient::new(channel).get(request))
                .await
                .expect("get answers in time")
                .expect("get");
            !found.into_inner().result.is_empty()
        }

        /// Which of `n` counts on `a` fail, in order.
        async fn failing_counts(&self, n: usize) -> Vec<bool> {
            let mut failed = Vec::with_capacity(n);
            for _ in 0..n {
                failed.push(self.count("a").await.is_err());
            }
            failed
        }
    }

    #[tokio::test]
    async fn each_status_fault_arrives_with_qdrant_code_message_and_headers() {
        let rig = Rig::new().await;
        let cases = [
            (
                Fault::unavailable(),
                Code::Unavailable,
                "Shard temporarily unavailable",
            ),
            (
                Fault::deadline_exceeded(),
                Code::DeadlineExceeded,
                "Timeout",
            ),
            (Fault::internal(), Code::Internal, "Service internal error"),
            (
                Fault::rate_limited(Duration::from_millis(2500)),
                Code::ResourceExhausted,
                "Rate limiting exceeded",
            ),
            (
                Fault::insufficient_storage(),
                Code::ResourceExhausted,
                "No space left on device",
            ),
            (
                Fault::invalid_argument(),
                Code::InvalidArgument,
                "Wrong input",
            ),
            (Fault::not_found(), Code::NotFound, "Not found"),
            (
                Fault::permission_denied(),
                Code::PermissionDenied,
                "Forbidden",
            ),
            (
                Fault::unauthenticated(),
                Code::Unauthenticated,
                "Must provide an API key",
            ),
        ];
        for (fault, code, prefix) in cases {
            rig.server.set_faults(FaultRule::new(fault).rpc(Rpc::Count));
            let status = rig.count("a").await.unwrap_err();
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().starts_with(prefix), "{status:?}");
            assert!(status.message().ends_with("injected fault"), "{status:?}");
            let metadata = status.metadata();
            match prefix {
                "Rate limiting exceeded" => {
                    assert_eq!(metadata.get("retry-after").unwrap(), "3", "2.5 s rounds up");
                    assert!(metadata.get("qdrant-insufficient-storage").is_none());
                }
                "No space left on device" => {
                    assert_eq!(metadata.get("qdrant-insufficient-storage").unwrap(), "1");
                    assert!(metadata.get("retry-after").is_none());
                }
                _ => assert!(metadata.get("retry-after").is_none()),
            }
        }

        rig.server.set_faults(
            FaultRule::new(Fault::status(Code::Aborted, "custom").with_header("x-testkit", "yes"))
                .rpc(Rpc::Count),
        );
        let status = rig.count("a").await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(status.message(), "custom");
        assert_eq!(status.metadata().get("x-testkit").unwrap(), "yes");

        rig.server.clear_faults();
        assert_eq!(rig.count("a").await.unwrap(), 0);
        assert_eq!(rig.server.calls().count(Rpc::Count, "a"), 11);
        assert_eq!(rig.server.calls().faulted(Rpc::Count, "a"), 10);
    }

    #[tokio::test]
    async fn first_n_fails_exactly_the_first_n_calls() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Count)
                .first(2),
        );
        assert_eq!(rig.failing_counts(4).await, [true, true, false, false]);
        let calls = rig.server.calls();
        assert_eq!(
            calls.count(Rpc::Count, "a"),
            4,
            "the backend saw every attempt"
        );
        assert_eq!(calls.faulted(Rpc::Count, "a"), 2);
    }

    #[tokio::test]
    async fn every_nth_fails_every_nth_call() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultRule::new(Fault::internal())
                .rpc(Rpc::Count)
                .every_nth(3),
        );
        assert_eq!(
            rig.failing_counts(7).await,
            [false, false, true, false, false, true, false]
        );
    }

    #[tokio::test]
    async fn after_n_fails_every_call_after_the_first_n() {
        let rig = Rig::new().await;
        rig.server
            .set_faults(FaultRule::new(Fault::internal()).rpc(Rpc::Count).after(2));
        assert_eq!(
            rig.failing_counts(5).await,
            [false, false, true, true, true]
        );
    }

    #[tokio::test]
    async fn the_same_seed_fails_the_same_calls() {
        let rig = Rig::new().await;
        let rule = |seed| FaultRule::new(Fault::unavailable()).probability(0.5, seed);
        rig.server.set_faults(rule(11));
        let first = rig.failing_counts(24).await;
        rig.server.set_faults(rule(11));
        let again = rig.failing_counts(24).await;
        rig.server.set_faults(rule(12));
        let other = rig.failing_counts(24).await;
        assert_eq!(
            first, again,
            "reinstalling the plan replays the same decisions"
        );
        assert_ne!(first, other, "another seed picks other calls");
        assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    }

    #[tokio::test]
    async fn rules_match_by_rpc_collection_and_a_predicate_over_the_request() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultRule::new(Fault::invalid_argument())
                .rpc(Rpc::Search)
                .collection("a")
                .when(|call| call.message::<SearchPoints>().is_some_and(|m| m.limit > 5)),
        );
        assert_eq!(
            rig.search("a", 10).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        assert!(rig.search("a", 3).await.is_ok(), "the predicate rejects it");
        assert!(rig.search("b", 10).await.is_ok(), "another collection");
        assert!(rig.count("a").await.is_ok(), "another RPC");
        assert!(rig.upsert("a", 1).await.is_ok(), "another RPC");

        rig.server
            .set_faults(FaultRule::new(Fault::unavailable()).writes());
        assert!(rig.upsert("a", 2).await.is_err());
        assert!(rig.search("a", 10).await.is_ok(), "reads pass");
    }

    #[tokio::test]
    async fn a_time_window_faults_only_the_calls_inside_it() {
        let rig = Rig::new().await;
        let start = Instant::now();
        rig.server
            .set_faults(FaultRule::new(Fault::unavailable()).active_between(200 * MS, 500 * MS));
        let before = rig.count("a").await;
        sleep_until(start + 300 * MS).await;
        let inside = rig.count("a").await;
        sleep_until(start + 600 * MS).await;
        let after = rig.count("a").await;

        // Where each call arrived, to tell a slow machine from a wrong window.
        let arrivals: Vec<_> = rig
            .server
            .calls()
            .times(Rpc::Count, "a")
            .iter()
            .map(|at| at.duration_since(start))
            .collect();
        assert!(before.is_ok(), "before the window: {arrivals:?}");
        assert_eq!(
            inside.unwrap_err().code(),
            Code::Unavailable,
            "{arrivals:?}"
        );
        assert!(after.is_ok(), "after the window: {arrivals:?}");
    }

    #[tokio::test]
    async fn a_delayed_call_answers_normally_but_late() {
        let rig = Rig::new().await;
        rig.server
            .set_faults(FaultRule::new(Fault::delay(200 * MS)).rpc(Rpc::Count));
        rig.upsert("a", 1).await.unwrap();
        let start = Instant::now();
        assert_eq!(rig.count("a").await.unwrap(), 1);
        let took = start.elapsed();
        assert!(took >= 200 * MS, "{took:?}");
        assert!(took < 2 * WAIT, "{took:?}");

        rig.server
            .set_faults(FaultRule::new(Fault::unavailable().delayed(150 * MS)).rpc(Rpc::Count));
        let start = Instant::now();
        assert_eq!(rig.count("a").await.unwrap_err().code(), Code::Unavailable);
        assert!(start.elapsed() >= 150 * MS);
    }

    #[tokio::test]
    async fn a_hung_call_ends_only_in_the_client_timeout() {
        let rig = Rig::with_timeout(250 * MS).await;
        rig.server
            .set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Count).first(1));
        let start = Instant::now();
        let status = rig.count("a").await.unwrap_err();
        let took = start.elapsed();
        assert!(took >= 250 * MS, "{took:?}");
        assert!(took < WAIT, "{took:?}");
        assert_eq!(
            status.code(),
            Code::Cancelled,
            "tonic reports its own timeout as cancelled: {status:?}"
        );
        assert_eq!(
            rig.server.calls().count(Rpc::Count, "a"),
            1,
            "it did reach the server"
        );
        assert_eq!(
            rig.count("a").await.unwrap(),
            0,
            "the connection still serves"
        );
    }

    #[tokio::test]
    async fn shutting_down_releases_hung_calls() {
        let rig = Rig::new().await;
        rig.server.set_faults(FaultRule::new(Fault::hang()));
        let points = rig.points();
        let hung = tokio::spawn(async move {
            let mut points = points;
            points
                .count(CountPointsBuilder::new("a").build())
                .await
                .map(drop)
        });
        let calls = rig.server.calls();
        timeout(WAIT, async {
            while calls.count(Rpc::Count, "a") == 0 {
                sleep(5 * MS).await;
            }
        })
        .await
        .expect("the call reaches the server");

        let start = Instant::now();
        rig.server.shutdown().await;
        assert!(start.elapsed() < Duration::from_secs(2), "no drain timeout");
        let status = timeout(WAIT, hung).await.unwrap().unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    #[tokio::test]
    async fn apply_then_unavailable_applies_the_write_yet_fails_the_call() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultRule::new(Fault::apply_then_unavailable())
                .rpc(Rpc::Upsert)
                .first(1),
        );
        let status = rig.upsert("a", 7).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(rig.stored("a", 7).await, "the failed write was applied");
        assert_eq!(rig.server.calls().count(Rpc::Upsert, "a"), 1);
    }

    #[tokio::test]
    async fn apply_then_drop_applies_the_write_and_breaks_the_connection() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultRule::new(Fault::apply_then_drop())
                .rpc(Rpc::Upsert)
                .first(1),
        );
        let status = rig.upsert("a", 8).await.unwrap_err();
        assert_ne!(
            status.message(),
            "connection dropped by an injected fault",
            "the server's answer must never arrive"
        );
        assert!(rig.stored("a", 8).await, "the failed write was applied");
        // The channel reconnects on its own.
        assert!(rig.upsert("a", 9).await.is_ok());
    }

    /// Starts a search that hangs on the server, and waits until the server has it.
    async fn hung_search(rig: &Rig) -> tokio::task::JoinHandle<Result<(), Status>> {
        let before = rig.server.calls().count(Rpc::Search, "a");
        let points = rig.points();
        let in_flight = tokio::spawn(async move {
            let mut points = points;
            let request = SearchPointsBuilder::new("a", vec![1.0, 0.0], 1).build();
            points.search(request).await.map(drop)
        });
        let calls = rig.server.calls();
        timeout(WAIT, async {
            while calls.count(Rpc::Search, "a") == before {
                sleep(5 * MS).await;
            }
        })
        .await
        .expect("the search reaches the server");
        in_flight
    }

    #[tokio::test]
    async fn drop_connection_fails_every_call_in_flight_on_it() {
        let rig = Rig::new().await;
        rig.server.set_faults(
            FaultPlan::new()
                .rule(FaultRule::new(Fault::hang()).rpc(Rpc::Search))
                .rule(FaultRule::new(Fault::drop_connection()).rpc(Rpc::Count)),
        );
        let in_flight = hung_search(&rig).await;
        let start = Instant::now();
        let status = rig.count("a").await.unwrap_err();
        assert_ne!(status.message(), "connection dropped by an injected fault");
        let search = timeout(WAIT, in_flight).await.unwrap().unwrap();
        assert!(
            search.is_err(),
            "the hung search failed with its connection"
        );
        assert!(start.elapsed() < WAIT);
        assert_eq!(
            rig.upsert("a", 1).await.map_err(|s| s.code()),
            Ok(()),
            "a new connection serves"
        );
    }

    #[tokio::test]
    async fn the_server_can_cut_every_connection_at_once() {
        let rig = Rig::new().await;
        rig.server
            .set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
        let in_flight = hung_search(&rig).await;
        assert_eq!(rig.server.drop_connections(), 1);
        let search = timeout(WAIT, in_flight).await.unwrap().unwrap();
        assert!(
            search.is_err(),
            "the hung search failed with its connection"
        );
        rig.server.clear_faults();
        assert!(rig.count("a").await.is_ok(), "the channel reconnects");
    }

    #[tokio::test]
    async fn a_rate_limit_lets_n_calls_per_window_through_per_collection() {
        let rig = Rig::new().await;
        // 3 per minute: one token back every 20 s.
        rig.server
            .set_faults(FaultRule::rate_limit(3, Duration::from_secs(60)).rpc(Rpc::Count));
        assert_eq!(rig.failing_counts(3).await, [false, false, false]);
        let status = rig.count("a").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().starts_with("Rate limiting exceeded"));
        assert_eq!(status.metadata().get("retry-after").unwrap(), "20");
        assert!(
            rig.count("b").await.is_ok(),
            "each collection has its own budget"
        );
        assert!(
            rig.search("a", 1).await.is_ok(),
            "other RPCs are not limited"
        );
        assert_eq!(rig.server.calls().count(Rpc::Count, "a"), 4);
        assert_eq!(rig.server.calls().faulted(Rpc::Count, "a"), 1);
    }

    #[tokio::test]
    async fn the_call_log_records_every_call_faulted_or_not_in_arrival_order() {
        let rig = Rig::new().await;
        let start = Instant::now();
        rig.server.set_faults(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Search)
                .first(1),
        );
        let _ = rig.search("a", 1).await;
        rig.search("a", 1).await.unwrap();
        rig.count("b").await.unwrap();
        let mut health =
            qdrant_client::qdrant::qdrant_client::QdrantClient::new(rig.channel.clone());
        health
            .health_check(qdrant_client::qdrant::HealthCheckRequest {})
            .await
            .unwrap();
        let end = Instant::now();

        let calls = rig.server.calls();
        assert_eq!(calls.count(Rpc::Search, "a"), 2);
        assert_eq!(calls.faulted(Rpc::Search, "a"), 1);
        assert_eq!(calls.count(Rpc::Count, "b"), 1);
        assert_eq!(calls.count(Rpc::HealthCheck, ""), 1);
        assert_eq!(calls.count_rpc(Rpc::Search), 2);
        assert_eq!(calls.total(), 4);
        assert_eq!(calls.total_faulted(), 1);
        let times = calls.times(Rpc::Search, "a");
        assert!(start <= times[0] && times[0] <= times[1] && times[1] <= end);
        calls.reset();
        assert_eq!(rig.server.calls().total(), 0, "clones share the log");
    }
}
