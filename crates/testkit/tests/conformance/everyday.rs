//! What users meet every day, held to what a real Qdrant 1.18 answers: a new collection's info
//! and defaults, `wait=false` answers, scroll order and paging, UUIDs in their several forms,
//! bad filters, payload index requests, alias renames and snapshot listings.
//!
//! Where the testkit deviates because qdrant-edge cannot do what Qdrant does, the assertion
//! names the deviation, which README.md lists under "Known differences".

use std::fmt::Debug;

use qdrant_client::qdrant::alias_operations::Action;
use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::max_optimization_threads::{Setting, Variant};
use qdrant_client::qdrant::snapshots_client::SnapshotsClient;
use qdrant_client::qdrant::{
    AliasOperations, ChangeAliases, CollectionInfo, CreateAlias, CreateFieldIndexCollection,
    CreateSnapshotRequest, DeleteFieldIndexCollection, DeleteSnapshotRequest, FieldCondition,
    GeoBoundingBox, GeoPoint, GeoPolygon, GeoRadius, HasIdCondition, IntegerIndexParamsBuilder,
    ListSnapshotsRequest, Match, NestedCondition, PayloadIndexParams, RenameAlias, ScrollPoints,
    ScrollResponse, UpdateStatus,
};

use super::*;

#[track_caller]
fn assert_status(result: Result<impl Debug, Status>, code: Code, message: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

impl Target {
    async fn collection_info(&self, name: &str) -> CollectionInfo {
        self.collections()
            .get(GetCollectionInfoRequest {
                collection_name: name.to_owned(),
            })
            .await
            .expect("get collection info")
            .into_inner()
            .result
            .expect("collection info")
    }

    async fn collection_exists(&self, name: &str) -> bool {
        self.collections()
            .collection_exists(CollectionExistsRequest {
                collection_name: name.to_owned(),
            })
            .await
            .expect("collection exists")
            .into_inner()
            .result
            .expect("exists result")
            .exists
    }

    async fn scroll_page(&self, request: ScrollPointsBuilder) -> ScrollResponse {
        self.points()
            .scroll(request.with_payload(false).build())
            .await
            .expect("scroll")
            .into_inner()
    }
}

fn uuid(text: &str) -> PointId {
    PointId::from(text.to_owned())
}

/// Ids as Qdrant writes them in JSON: numbers, or UUIDs as strings.
fn ids_of(points: &[RetrievedPoint]) -> Vec<Json> {
    points
        .iter()
        .map(|point| id_json(point.id.as_ref()))
        .collect()
}

fn id_json(id: Option<&PointId>) -> Json {
    match id.and_then(|id| id.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(num)) => json!(num),
        Some(PointIdOptions::Uuid(uuid)) => json!(uuid),
        None => Json::Null,
    }
}

fn field_filter(key: &str, set: impl FnOnce(&mut FieldCondition)) -> Filter {
    let mut condition = FieldCondition {
        key: key.to_owned(),
        ..FieldCondition::default()
    };
    set(&mut condition);
    Filter::must([Condition {
        condition_one_of: Some(ConditionOneOf::Field(condition)),
    }])
}

// ---------------------------------------------------------------------------------------------
// Collection info

#[tokio::test]
async fn a_new_collection_reports_qdrant_defaults_and_then_its_points_and_indexes() {
    let target = Target::new().await;
    let name = target.create_plain("defaults", 2, Distance::Dot).await;

    let info = target.collection_info(&name).await;
    assert_eq!(info.status, CollectionStatus::Green as i32);
    let optimizer = info.optimizer_status.clone().expect("optimizer status");
    assert!(optimizer.ok && optimizer.error.is_empty(), "{optimizer:?}");
    assert_eq!(info.points_count, Some(0));
    assert_eq!(info.indexed_vectors_count, Some(0));
    assert!(info.payload_schema.is_empty());
    if target.is_testkit() {
        // Known difference: a qdrant-edge shard starts with one appendable segment.
        assert_eq!(info.segments_count, 1);
    } else {
        // Qdrant starts `default_segment_number: 0` (auto) collections with one segment per
        // two CPUs, from 2 to 8.
        assert!((2..=8).contains(&info.segments_count), "{info:?}");
    }

    let config = info.config.expect("collection config");
    let params = config.params.expect("collection params");
    assert_eq!(params.shard_number, 1);
    assert_eq!(params.replication_factor, Some(1));
    assert_eq!(params.write_consistency_factor, Some(1));
    assert!(params.on_disk_payload);
    assert_eq!(params.sharding_method, None);
    assert_eq!(params.sparse_vectors_config, None);

    let hnsw = config.hnsw_config.expect("hnsw config");
    assert_eq!(
        (
            hnsw.m,
            hnsw.ef_construct,
            hnsw.full_scan_threshold,
            hnsw.on_disk
        ),
        (Some(16), Some(100), Some(10_000), Some(false))
    );
    assert_eq!(hnsw.payload_m, None);
    // Qdrant reports 0 (as many threads as it sees fit); known difference: the testkit reports
    // the threads it builds indexes with, `TestServerBuilder::search_threads` (default 1).
    let auto_threads = if target.is_testkit() { 1 } else { 0 };
    assert_eq!(hnsw.max_indexing_threads, Some(auto_threads));

    let optimizers = config.optimizer_config.expect("optimizer config");
    assert_eq!(optimizers.deleted_threshold, Some(0.2));
    assert_eq!(optimizers.vacuum_min_vector_number, Some(1000));
    assert_eq!(optimizers.default_segment_number, Some(0));
    assert_eq!(optimizers.max_segment_size, None);
    assert_eq!(optimizers.memmap_threshold, None);
    assert_eq!(optimizers.indexing_threshold, Some(10_000));
    assert_eq!(optimizers.flush_interval_sec, Some(5));
    assert_eq!(
        optimizers.max_optimization_threads.and_then(|t| t.variant),
        Some(Variant::Setting(Setting::Auto as i32))
    );
    assert_eq!(optimizers.prevent_unoptimized, None);

    let wal = config.wal_config.expect("wal config");
    // Known difference: the testkit's WAL segments default to 1 MB (Qdrant: 32 MB).
    let wal_mb = if target.is_testkit() { 1 } else { 32 };
    assert_eq!(
        (
            wal.wal_capacity_mb,
            wal.wal_segments_ahead,
            wal.wal_retain_closed
        ),
        (Some(wal_mb), Some(0), Some(1))
    );
    assert_eq!(config.quantization_config, None);
    assert_eq!(config.strict_mode_config, None);
    assert!(config.metadata.is_empty());

    // Points and a payload index show up in the counts and the schema.
    target
        .upsert(
            &name,
            vec![
                PointStruct::new(1, vec![1.0, 0.0], payload(json!({"kind": "a"}))),
                PointStruct::new(2, vec![0.0, 1.0], payload(json!({"kind": "b"}))),
                PointStruct::new(3, vec![1.0, 1.0], payload(json!({"other": 1}))),
            ],
        )
        .await;
    target
        .points()
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "kind", FieldType::Keyword)
                .wait(true)
                .build(),
        )
        .await
        .expect("create field index");
    let info = target.collection_info(&name).await;
    assert_eq!(info.status, CollectionStatus::Green as i32);
    assert_eq!(info.points_count, Some(3));
    // Far below the indexing threshold: no vector is in an HNSW index yet.
    assert_eq!(info.indexed_vectors_count, Some(0));
    assert_eq!(
        info.payload_schema.keys().collect::<Vec<_>>(),
        vec!["kind"],
        "{:?}",
        info.payload_schema
    );
    let kind = &info.payload_schema["kind"];
    assert_eq!(kind.data_type, PayloadSchemaType::Keyword as i32);
    assert_eq!(kind.points, Some(2), "points with a value for the index");
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// wait=false

#[tokio::test]
async fn a_write_without_wait_is_acknowledged_with_an_operation_id_and_lands() {
    let target = Target::new().await;
    let name = target.create_plain("no_wait", 2, Distance::Dot).await;
    let mut request = UpsertPointsBuilder::new(
        &name,
        vec![PointStruct::new(1, vec![1.0, 0.0], Payload::new())],
    )
    .build();
    request.wait = Some(false);
    let reply = target
        .points()
        .upsert(request)
        .await
        .expect("upsert without wait")
        .into_inner();
    // A write reports an empty usage: no hardware or inference accounting.
    assert_eq!(
        reply.usage,
        Some(qdrant_client::qdrant::Usage::default()),
        "{reply:?}"
    );
    let first = reply.result.expect("update result");
    assert_eq!(first.status, UpdateStatus::Acknowledged as i32);
    // A new collection's first update is operation 1.
    assert_eq!(first.operation_id, Some(1));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while target.count(&name, None).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the acknowledged write is not visible after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let second = target
        .points()
        .upsert(
            UpsertPointsBuilder::new(
                &name,
                vec![PointStruct::new(2, vec![0.0, 1.0], Payload::new())],
            )
            .wait(true)
            .build(),
        )
        .await
        .expect("upsert with wait")
        .into_inner()
        .result
        .expect("update result");
    assert_eq!(second.status, UpdateStatus::Completed as i32);
    assert!(
        second.operation_id > first.operation_id,
        "{second:?} after {first:?}"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Scroll

#[tokio::test]
async fn scroll_orders_numbers_before_uuids_and_pages_by_next_page_offset() {
    let target = Target::new().await;
    let name = target.create_plain("scroll_order", 2, Distance::Dot).await;
    let ids: Vec<PointId> = vec![
        10.into(),
        uuid("6ba7b812-9dad-11d1-80b4-00c04fd430c8"),
        3.into(),
        uuid("550e8400-e29b-41d4-a716-446655440000"),
        1.into(),
        uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
        11.into(),
    ];
    let points = ids
        .into_iter()
        .map(|id| PointStruct::new(id, vec![1.0, 1.0], Payload::new()))
        .collect();
    target.upsert(&name, points).await;
    let all = json!([
        1,
        3,
        10,
        11,
        "550e8400-e29b-41d4-a716-446655440000",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
    ]);
    let all = all.as_array().unwrap();

    // Pages of three: numbers first, by value, then UUIDs, by value.
    let mut seen = Vec::new();
    let mut offsets = Vec::new();
    let mut offset: Option<PointId> = None;
    loop {
        let mut request = ScrollPointsBuilder::new(&name).limit(3);
        if let Some(offset) = offset.take() {
            request = request.offset(offset);
        }
        let page = target.scroll_page(request).await;
        seen.extend(ids_of(&page.result));
        offsets.push(id_json(page.next_page_offset.as_ref()));
        match page.next_page_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
        assert!(offsets.len() < 5, "scroll does not end: {offsets:?}");
    }
    assert_eq!(&seen, all);
    assert_eq!(
        offsets,
        vec![
            json!(11),
            json!("6ba7b812-9dad-11d1-80b4-00c04fd430c8"),
            Json::Null
        ]
    );

    // A page that takes exactly the points left has no next page; one short of them does.
    let page = target
        .scroll_page(ScrollPointsBuilder::new(&name).limit(7))
        .await;
    assert_eq!(ids_of(&page.result).len(), 7);
    assert_eq!(page.next_page_offset, None);
    let page = target
        .scroll_page(ScrollPointsBuilder::new(&name).limit(6))
        .await;
    assert_eq!(
        id_json(page.next_page_offset.as_ref()),
        json!("6ba7b812-9dad-11d1-80b4-00c04fd430c8")
    );
    // Without a limit, a page holds ten points.
    let page = target
        .points()
        .scroll(ScrollPoints {
            collection_name: name.clone(),
            ..ScrollPoints::default()
        })
        .await
        .expect("scroll")
        .into_inner();
    assert_eq!(&ids_of(&page.result), all);
    assert_eq!(page.next_page_offset, None);

    // An offset need not be a stored id: the page starts at the next one.
    let page = target
        .scroll_page(ScrollPointsBuilder::new(&name).limit(2).offset(2))
        .await;
    assert_eq!(ids_of(&page.result), vec![json!(3), json!(10)]);
    assert_eq!(id_json(page.next_page_offset.as_ref()), json!(11));
    // A UUID offset may be written in upper case.
    let page = target
        .scroll_page(
            ScrollPointsBuilder::new(&name)
                .limit(1)
                .offset(uuid("6BA7B810-9DAD-11D1-80B4-00C04FD430C8")),
        )
        .await;
    assert_eq!(
        ids_of(&page.result),
        vec![json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8")]
    );
    // Past the last id: an empty page, and no next one.
    let page = target
        .scroll_page(
            ScrollPointsBuilder::new(&name)
                .limit(2)
                .offset(uuid("ffffffff-ffff-ffff-ffff-ffffffffffff")),
        )
        .await;
    assert!(page.result.is_empty());
    assert_eq!(page.next_page_offset, None);

    assert_status(
        target
            .points()
            .scroll(ScrollPointsBuilder::new(&name).limit(0).build())
            .await,
        Code::InvalidArgument,
        "Validation error in body: [limit: value 0 invalid, must be 1 or larger]",
    );
    // Ordered by a payload field, a page starts from a value, not from an id.
    assert_status(
        target
            .points()
            .scroll(ScrollPoints {
                collection_name: name.clone(),
                offset: Some(3.into()),
                order_by: Some(qdrant_client::qdrant::OrderBy {
                    key: "rank".to_owned(),
                    ..Default::default()
                }),
                ..ScrollPoints::default()
            })
            .await,
        Code::InvalidArgument,
        "Wrong input: Cannot use an `offset` when using `order_by`. The alternative for paging is to use `order_by.start_from` and a filter to exclude the IDs that you've already seen for the `order_by.start_from` value",
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// UUIDs

#[tokio::test]
async fn uuids_in_any_form_name_one_point_and_come_back_canonical() {
    let target = Target::new().await;
    let name = target.create_plain("uuid_forms", 2, Distance::Dot).await;
    // Upper case, braces, no hyphens, URN: `uuid`'s parser takes them all, as Qdrant's does.
    let written = [
        "550E8400-E29B-41D4-A716-446655440000",
        "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
        "6ba7b8119dad11d180b400c04fd430c8",
        "urn:uuid:6ba7b812-9dad-11d1-80b4-00c04fd430c8",
    ];
    let points = written
        .iter()
        .enumerate()
        .map(|(i, id)| PointStruct::new(uuid(id), vec![1.0, i as f32], payload(json!({"form": i}))))
        .collect();
    target.upsert(&name, points).await;

    let page = target
        .scroll_page(ScrollPointsBuilder::new(&name).limit(10))
        .await;
    assert_eq!(
        ids_of(&page.result),
        vec![
            json!("550e8400-e29b-41d4-a716-446655440000"),
            json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            json!("6ba7b811-9dad-11d1-80b4-00c04fd430c8"),
            json!("6ba7b812-9dad-11d1-80b4-00c04fd430c8"),
        ]
    );

    // Written again in its canonical form, a point is overwritten, not added.
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                uuid("550e8400-e29b-41d4-a716-446655440000"),
                vec![1.0, 0.0],
                payload(json!({"form": "canonical"})),
            )],
        )
        .await;
    assert_eq!(target.count(&name, None).await, 4);
    let got = target
        .points()
        .get(
            GetPointsBuilder::new(&name, vec![uuid("{550E8400-E29B-41D4-A716-446655440000}")])
                .with_payload(true)
                .build(),
        )
        .await
        .expect("get")
        .into_inner()
        .result;
    assert_eq!(got.len(), 1);
    assert_eq!(
        id_json(got[0].id.as_ref()),
        json!("550e8400-e29b-41d4-a716-446655440000")
    );
    assert_eq!(
        payload_json(got[0].payload.clone()),
        json!({"form": "canonical"})
    );
    let hits = target
        .points()
        .search(SearchPointsBuilder::new(&name, vec![0.0, 1.0], 1).build())
        .await
        .expect("search")
        .into_inner()
        .result;
    assert_eq!(
        id_json(hits[0].id.as_ref()),
        json!("6ba7b812-9dad-11d1-80b4-00c04fd430c8")
    );
    let has_id = Filter::must([Condition::has_id([uuid(
        "6BA7B811-9DAD-11D1-80B4-00C04FD430C8",
    )])]);
    assert_eq!(target.count(&name, Some(has_id)).await, 1);

    // Anything else is refused, naming what was sent.
    let bad = "not-a-uuid";
    assert_status(
        target
            .points()
            .upsert(
                UpsertPointsBuilder::new(
                    &name,
                    vec![PointStruct::new(uuid(bad), vec![1.0, 0.0], Payload::new())],
                )
                .wait(true)
                .build(),
            )
            .await,
        Code::InvalidArgument,
        "Unable to parse UUID: not-a-uuid",
    );
    assert_status(
        target
            .points()
            .get(GetPointsBuilder::new(&name, vec![uuid(bad)]).build())
            .await,
        Code::InvalidArgument,
        "Unable to parse UUID: not-a-uuid",
    );
    assert_status(
        target
            .points()
            .count(
                CountPointsBuilder::new(&name)
                    .filter(Filter::must([Condition {
                        condition_one_of: Some(ConditionOneOf::HasId(HasIdCondition {
                            has_id: vec![uuid(bad)],
                        })),
                    }]))
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        "Unable to parse UUID: not-a-uuid",
    );
    assert_eq!(target.count(&name, None).await, 4);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Bad filters

#[tokio::test]
async fn malformed_filters_are_refused_with_qdrant_wording() {
    let target = Target::new().await;
    let name = target.create_plain("bad_filters", 2, Distance::Dot).await;
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                vec![1.0, 0.0],
                payload(json!({"place": {"lat": 52.5, "lon": 13.4}, "kind": "a"})),
            )],
        )
        .await;
    let count = |filter: Filter| {
        let mut points = target.points();
        let request = CountPointsBuilder::new(&name)
            .filter(filter)
            .exact(true)
            .build();
        async move { points.count(request).await }
    };
    let berlin = || GeoPoint {
        lat: 52.5,
        lon: 13.4,
    };

    let cases: Vec<(Filter, &str)> = vec![
        (
            field_filter("kind", |c| c.r#match = Some(Match { match_value: None })),
            "Malformed Match condition",
        ),
        (
            field_filter("", |c| {
                c.r#match = Some(Match {
                    match_value: Some(MatchValue::Keyword("a".to_owned())),
                })
            }),
            "Invalid json path: ''",
        ),
        (
            Filter::must([Condition {
                condition_one_of: Some(ConditionOneOf::Nested(NestedCondition {
                    key: "reviews".to_owned(),
                    filter: None,
                })),
            }]),
            "Nested condition must have a filter",
        ),
        (
            field_filter("place", |c| {
                c.geo_radius = Some(GeoRadius {
                    center: None,
                    radius: 1000.0,
                })
            }),
            "Malformed GeoRadius type",
        ),
        (
            field_filter("place", |c| {
                c.geo_bounding_box = Some(GeoBoundingBox {
                    top_left: Some(berlin()),
                    bottom_right: None,
                })
            }),
            "Malformed GeoBoundingBox type",
        ),
        (
            field_filter("place", |c| {
                c.geo_polygon = Some(GeoPolygon {
                    exterior: None,
                    interiors: Vec::new(),
                })
            }),
            "Malformed GeoPolygon type - field `exterior` is required",
        ),
    ];
    for (filter, message) in cases {
        assert_status(count(filter).await, Code::InvalidArgument, message);
    }

    // A centre off the globe is not an error: it matches nothing.
    let off_globe = field_filter("place", |c| {
        c.geo_radius = Some(GeoRadius {
            center: Some(GeoPoint {
                lat: 100.0,
                lon: 13.4,
            }),
            radius: 1000.0,
        })
    });
    assert_eq!(target.count(&name, Some(off_globe)).await, 0);
    let near = field_filter("place", |c| {
        c.geo_radius = Some(GeoRadius {
            center: Some(berlin()),
            radius: 1000.0,
        })
    });
    assert_eq!(target.count(&name, Some(near)).await, 1);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Payload index requests

#[tokio::test]
async fn payload_index_requests_are_checked_like_qdrant() {
    let target = Target::new().await;
    let name = target
        .create_plain("index_requests", 2, Distance::Dot)
        .await;
    target
        .upsert(
            &name,
            vec![
                PointStruct::new(1, vec![1.0, 0.0], payload(json!({"kind": "a", "n": 1}))),
                PointStruct::new(2, vec![0.0, 1.0], payload(json!({"kind": "b", "n": 2}))),
            ],
        )
        .await;
    let request = |field: &str, field_type: Option<FieldType>| CreateFieldIndexCollection {
        collection_name: name.clone(),
        wait: Some(true),
        field_name: field.to_owned(),
        field_type: field_type.map(|t| t as i32),
        ..CreateFieldIndexCollection::default()
    };
    let mut points = target.points();

    assert_status(
        points.create_field_index(request("kind", None)).await,
        Code::InvalidArgument,
        "cannot convert field_type",
    );
    assert_status(
        points
            .create_field_index(CreateFieldIndexCollection {
                field_index_params: Some(PayloadIndexParams::from(
                    IntegerIndexParamsBuilder::new(true, true).build(),
                )),
                ..request("n", Some(FieldType::Keyword))
            })
            .await,
        Code::InvalidArgument,
        "field_type (Keyword) and field_index_params do not match",
    );
    assert_status(
        points
            .create_field_index(request("", Some(FieldType::Keyword)))
            .await,
        Code::InvalidArgument,
        "Validation error in body: [field_name: value \"\" invalid, must be at least 1 characters]",
    );
    let missing = unique("missing");
    assert_status(
        points
            .create_field_index(CreateFieldIndexCollection {
                collection_name: missing.clone(),
                ..request("kind", Some(FieldType::Keyword))
            })
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{missing}` doesn't exist!"),
    );

    // Creating an index twice is fine; another type replaces it.
    for _ in 0..2 {
        let done = points
            .create_field_index(request("kind", Some(FieldType::Keyword)))
            .await
            .expect("create keyword index")
            .into_inner()
            .result
            .expect("update result");
        assert_eq!(done.status, UpdateStatus::Completed as i32);
    }
    points
        .create_field_index(request("n", Some(FieldType::Integer)))
        .await
        .expect("create integer index");
    points
        .create_field_index(request("n", Some(FieldType::Float)))
        .await
        .expect("replace it with a float index");
    // An index of a type no value has is made, and covers no point.
    points
        .create_field_index(request("kind_geo", Some(FieldType::Geo)))
        .await
        .expect("create geo index");
    let schema = target.collection_info(&name).await.payload_schema;
    let types: BTreeSet<_> = schema
        .iter()
        .map(|(field, info)| (field.clone(), info.data_type, info.points))
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([
            (
                "kind".to_owned(),
                PayloadSchemaType::Keyword as i32,
                Some(2)
            ),
            ("n".to_owned(), PayloadSchemaType::Float as i32, Some(2)),
            (
                "kind_geo".to_owned(),
                PayloadSchemaType::Geo as i32,
                Some(0)
            ),
        ])
    );

    // Deleting an index that does not exist succeeds.
    let deleted = points
        .delete_field_index(DeleteFieldIndexCollection {
            collection_name: name.clone(),
            wait: Some(true),
            field_name: "never_indexed".to_owned(),
            ..DeleteFieldIndexCollection::default()
        })
        .await
        .expect("delete a missing index")
        .into_inner()
        .result
        .expect("update result");
    assert_eq!(deleted.status, UpdateStatus::Completed as i32);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Aliases

#[tokio::test]
async fn renaming_onto_an_existing_alias_replaces_it_and_a_missing_alias_is_not_found() {
    let target = Target::new().await;
    let first = target.create_plain("alias_one", 2, Distance::Dot).await;
    let second = target.create_plain("alias_two", 2, Distance::Dot).await;
    target
        .upsert(
            &second,
            vec![PointStruct::new(1, vec![1.0, 0.0], Payload::new())],
        )
        .await;
    let (old, taken) = (unique("old"), unique("taken"));
    let change = |actions: Vec<Action>| {
        let mut collections = target.collections();
        let request = ChangeAliases {
            actions: actions
                .into_iter()
                .map(|action| AliasOperations {
                    action: Some(action),
                })
                .collect(),
            timeout: None,
        };
        async move { collections.update_aliases(request).await }
    };
    let create = |collection: &str, alias: &str| {
        Action::CreateAlias(CreateAlias {
            collection_name: collection.to_owned(),
            alias_name: alias.to_owned(),
        })
    };
    change(vec![create(&second, &old), create(&first, &taken)])
        .await
        .expect("create aliases");
    assert_eq!(target.count(&taken, None).await, 0);

    change(vec![Action::RenameAlias(RenameAlias {
        old_alias_name: old.clone(),
        new_alias_name: taken.clone(),
    })])
    .await
    .expect("rename onto an existing alias");
    // `taken` now stands for the collection `old` stood for, and `old` is gone.
    assert_eq!(target.count(&taken, None).await, 1);
    assert_status(
        target
            .points()
            .count(CountPointsBuilder::new(&old).build())
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{old}` doesn't exist!"),
    );
    assert_status(
        target
            .collections()
            .get(GetCollectionInfoRequest {
                collection_name: old.clone(),
            })
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{old}` doesn't exist!"),
    );

    target.drop_collection(&first).await;
    target.drop_collection(&second).await;
}

// ---------------------------------------------------------------------------------------------
// Snapshot listing

#[tokio::test]
async fn snapshot_lists_start_empty_and_outlive_their_collection() {
    let _no_full_snapshot = FULL_SNAPSHOT.read().await;
    let target = Target::new().await;
    let name = target.create_plain("snap_list", 2, Distance::Dot).await;
    let mut snapshots = SnapshotsClient::new(target.channel.clone());
    let list = |name: &str| {
        let mut snapshots = SnapshotsClient::new(target.channel.clone());
        let request = ListSnapshotsRequest {
            collection_name: name.to_owned(),
        };
        async move { snapshots.list(request).await }
    };
    let names = |list: Vec<qdrant_client::qdrant::SnapshotDescription>| {
        list.into_iter()
            .map(|snapshot| snapshot.name)
            .collect::<BTreeSet<_>>()
    };
    assert!(
        list(&name)
            .await
            .expect("list")
            .into_inner()
            .snapshot_descriptions
            .is_empty()
    );

    let mut made = BTreeSet::new();
    for round in 0..2 {
        if round > 0 {
            // Snapshot names carry the time to the second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let snapshot = snapshots
            .create(CreateSnapshotRequest {
                collection_name: name.clone(),
            })
            .await
            .expect("create snapshot")
            .into_inner()
            .snapshot_description
            .expect("snapshot description");
        assert!(snapshot.creation_time.is_some(), "{snapshot:?}");
        made.insert(snapshot.name);
    }
    assert_eq!(made.len(), 2);
    let listed = list(&name)
        .await
        .expect("list")
        .into_inner()
        .snapshot_descriptions;
    assert!(
        listed
            .iter()
            .all(|s| s.size > 0 && s.creation_time.is_some() && s.checksum.is_some()),
        "{listed:?}"
    );
    assert_eq!(names(listed), made);

    // Dropping the collection keeps its snapshot files: a collection of the same name lists
    // them again.
    target.drop_collection(&name).await;
    assert_status(
        list(&name).await,
        Code::NotFound,
        &format!("Not found: Collection `{name}` doesn't exist!"),
    );
    target
        .collections()
        .create(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                .build(),
        )
        .await
        .expect("create the collection again");
    let listed = list(&name)
        .await
        .expect("list")
        .into_inner()
        .snapshot_descriptions;
    assert_eq!(names(listed), made);

    for snapshot in made {
        snapshots
            .delete(DeleteSnapshotRequest {
                collection_name: name.clone(),
                snapshot_name: snapshot,
            })
            .await
            .expect("delete snapshot");
    }
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Values count and min_should: semantics that changed in Qdrant 1.19

/// Whether the server runs Qdrant 1.19 or later, by its health check. Qdrant 1.19 changed
/// two filter rules (a `values_count` condition sees a missing field as zero values; an empty
/// `min_should` is no longer dropped); the testkit's engine, qdrant-edge 0.9, follows 1.19+ and
/// the testkit reports 1.20.
async fn qdrant_1_19_or_later(target: &Target) -> bool {
    let version = QdrantClient::new(target.channel.clone())
        .health_check(HealthCheckRequest {})
        .await
        .expect("health check")
        .into_inner()
        .version;
    let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (1, 19),
        _ => panic!("server version {version:?} is not major.minor.patch"),
    }
}

#[tokio::test]
async fn values_count_counts_null_and_empty_as_zero_and_a_missing_field_from_1_19() {
    let target = Target::new().await;
    let name = target.create_plain("values_count", 2, Distance::Dot).await;
    let tags = [
        (1, json!({"tags": ["a", "b"]})),
        (2, json!({"tags": "a"})),
        (3, json!({})),
        (4, json!({"tags": []})),
        (5, json!({"tags": null})),
    ];
    let points = tags
        .into_iter()
        .map(|(id, fields)| PointStruct::new(id, vec![1.0, 0.0], payload(fields)))
        .collect();
    target.upsert(&name, points).await;
    let (target, name) = (&target, name.as_str());
    let ids = |count: ValuesCount| {
        let filter = field_filter("tags", |c| c.values_count = Some(count));
        async move {
            let page = target
                .scroll_page(ScrollPointsBuilder::new(name).filter(filter).limit(10))
                .await;
            ids_of(&page.result)
        }
    };
    let count = |lt: Option<u64>, gte: Option<u64>| ValuesCount {
        lt,
        gte,
        ..ValuesCount::default()
    };
    // Point 3 has no `tags` at all: up to 1.18 no count matches it, not even "fewer than
    // one"; from 1.19 it has zero values.
    let missing = if qdrant_1_19_or_later(target).await {
        vec![json!(3)]
    } else {
        vec![]
    };
    let with_missing = |mut ids: Vec<Json>| {
        ids.extend(missing.clone());
        ids.sort_by_key(|id| id.as_u64());
        ids
    };
    assert_eq!(
        ids(count(Some(1), None)).await,
        with_missing(vec![json!(4), json!(5)])
    );
    assert_eq!(
        ids(count(Some(2), None)).await,
        with_missing(vec![json!(2), json!(4), json!(5)])
    );
    assert_eq!(
        ids(count(None, Some(0))).await,
        with_missing(vec![json!(1), json!(2), json!(4), json!(5)])
    );
    assert_eq!(ids(count(None, Some(2))).await, vec![json!(1)]);
    target.drop_collection(name).await;
}

#[tokio::test]
async fn min_should_asks_for_at_least_min_count_of_its_conditions() {
    let target = Target::new().await;
    let name = target.create_plain("min_should", 2, Distance::Dot).await;
    target
        .upsert(
            &name,
            (1..=3)
                .map(|id| PointStruct::new(id, vec![1.0, 0.0], Payload::new()))
                .collect(),
        )
        .await;
    let min_should = |conditions: Vec<Condition>, min_count: u64| Filter {
        min_should: Some(qdrant_client::qdrant::MinShould {
            conditions,
            min_count,
        }),
        ..Filter::default()
    };
    let two_of = vec![
        Condition::has_id([PointId::from(1), PointId::from(2)]),
        Condition::has_id([PointId::from(2), PointId::from(3)]),
    ];
    assert_eq!(
        target
            .count(&name, Some(min_should(two_of.clone(), 1)))
            .await,
        3
    );
    assert_eq!(
        target
            .count(&name, Some(min_should(two_of.clone(), 2)))
            .await,
        1
    );
    assert_eq!(target.count(&name, Some(min_should(two_of, 3))).await, 0);
    // Without conditions: up to 1.18 the clause is dropped (every point matches); from 1.19
    // no point has one condition to match.
    let expected = if qdrant_1_19_or_later(&target).await {
        0
    } else {
        3
    };
    assert_eq!(
        target.count(&name, Some(min_should(vec![], 1))).await,
        expected
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Requests missing their points, selectors or names

#[tokio::test]
async fn writes_without_points_or_selectors_are_refused_with_qdrant_wording() {
    use qdrant_client::qdrant::{
        ClearPayloadPoints, DeletePayloadPoints, DeletePointVectors, DeletePoints, PointsSelector,
        SetPayloadPoints, UpsertPoints, VectorsSelector,
    };

    let target = Target::new().await;
    let name = target.create_plain("no_selector", 2, Distance::Dot).await;
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                vec![1.0, 0.0],
                payload(json!({"a": 1})),
            )],
        )
        .await;
    let mut points = target.points();

    assert_status(
        points
            .upsert(UpsertPoints {
                collection_name: name.clone(),
                wait: Some(true),
                ..UpsertPoints::default()
            })
            .await,
        Code::InvalidArgument,
        "Bad request: Empty update request",
    );
    // So is an update of an empty list of ids.
    let no_ids = || PointsSelector {
        points_selector_one_of: Some(
            qdrant_client::qdrant::points_selector::PointsSelectorOneOf::Points(PointsIdsList {
                ids: Vec::new(),
            }),
        ),
    };
    assert_status(
        points
            .delete(DeletePoints {
                collection_name: name.clone(),
                wait: Some(true),
                points: Some(no_ids()),
                ..DeletePoints::default()
            })
            .await,
        Code::InvalidArgument,
        "Bad request: Empty update request",
    );
    assert_status(
        points
            .set_payload(SetPayloadPoints {
                collection_name: name.clone(),
                wait: Some(true),
                payload: payload(json!({"b": 2})).into(),
                points_selector: Some(no_ids()),
                ..SetPayloadPoints::default()
            })
            .await,
        Code::InvalidArgument,
        "Bad request: Empty update request",
    );
    assert_status(
        points
            .update_vectors(qdrant_client::qdrant::UpdatePointVectors {
                collection_name: name.clone(),
                wait: Some(true),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "Bad request: Empty update request",
    );
    // Delete and clear say the selector is missing ...
    const MISSING: &str = "PointSelector is missing";
    let delete = |points: Option<PointsSelector>| DeletePoints {
        collection_name: name.clone(),
        wait: Some(true),
        points,
        ..DeletePoints::default()
    };
    assert_status(
        points.delete(delete(None)).await,
        Code::InvalidArgument,
        MISSING,
    );
    assert_status(
        points
            .clear_payload(ClearPayloadPoints {
                collection_name: name.clone(),
                wait: Some(true),
                ..ClearPayloadPoints::default()
            })
            .await,
        Code::InvalidArgument,
        MISSING,
    );
    // ... the payload and vector updates that it is expected.
    const EXPECTED: &str = "points_selector is expected";
    let set = SetPayloadPoints {
        collection_name: name.clone(),
        wait: Some(true),
        payload: payload(json!({"b": 2})).into(),
        ..SetPayloadPoints::default()
    };
    assert_status(
        points.set_payload(set.clone()).await,
        Code::InvalidArgument,
        EXPECTED,
    );
    assert_status(
        points.overwrite_payload(set).await,
        Code::InvalidArgument,
        EXPECTED,
    );
    assert_status(
        points
            .delete_payload(DeletePayloadPoints {
                collection_name: name.clone(),
                wait: Some(true),
                keys: vec!["a".to_owned()],
                ..DeletePayloadPoints::default()
            })
            .await,
        Code::InvalidArgument,
        EXPECTED,
    );
    assert_status(
        points
            .delete_vectors(DeletePointVectors {
                collection_name: name.clone(),
                wait: Some(true),
                vectors: Some(VectorsSelector {
                    names: vec![String::new()],
                }),
                ..DeletePointVectors::default()
            })
            .await,
        Code::InvalidArgument,
        EXPECTED,
    );
    // A selector that selects neither ids nor a filter is malformed.
    assert_status(
        points
            .delete(delete(Some(PointsSelector {
                points_selector_one_of: None,
            })))
            .await,
        Code::InvalidArgument,
        "Malformed PointsSelector type",
    );
    // Nothing was changed.
    let got = target
        .points()
        .get(
            GetPointsBuilder::new(&name, vec![1.into()])
                .with_payload(true)
                .build(),
        )
        .await
        .expect("get")
        .into_inner()
        .result;
    assert_eq!(payload_json(got[0].payload.clone()), json!({"a": 1}));
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn collection_names_and_vector_sizes_are_validated_like_qdrant() {
    use qdrant_client::qdrant::{VectorParams, VectorsConfig, vectors_config};

    let target = Target::new().await;
    let mut collections = target.collections();
    assert_status(
        collections
            .create(
                CreateCollectionBuilder::new("a/b")
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        "Validation error in body: [collection_name: collection name cannot contain \"/\" char]",
    );
    const EMPTY: &str = "Validation error in body: [collection_name: value \"\" invalid, must be from 1 to 255 characters]";
    assert_status(
        collections
            .create(
                CreateCollectionBuilder::new("")
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        EMPTY,
    );
    assert_status(
        collections
            .get(GetCollectionInfoRequest {
                collection_name: String::new(),
            })
            .await,
        Code::InvalidArgument,
        EMPTY,
    );
    assert_status(
        collections
            .collection_exists(CollectionExistsRequest {
                collection_name: String::new(),
            })
            .await,
        Code::InvalidArgument,
        EMPTY,
    );
    let size_zero = unique("size_zero");
    assert_status(
        collections
            .create(qdrant_client::qdrant::CreateCollection {
                collection_name: size_zero.clone(),
                vectors_config: Some(VectorsConfig {
                    config: Some(vectors_config::Config::Params(VectorParams {
                        size: 0,
                        distance: Distance::Dot as i32,
                        ..VectorParams::default()
                    })),
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "Validation error in body: [vectors_config.config.size: value 0 invalid, must be from 1 to 65536]",
    );
    assert!(!target.collection_exists(&size_zero).await);

    // A collection without vectors reports an empty vector map, and stores payload-only points.
    let name = target
        .create("no_vectors", CreateCollectionBuilder::new(""))
        .await;
    let params = target
        .collection_info(&name)
        .await
        .config
        .expect("config")
        .params
        .expect("params");
    assert_eq!(
        params.vectors_config.and_then(|c| c.config),
        Some(vectors_config::Config::ParamsMap(
            qdrant_client::qdrant::VectorParamsMap {
                map: HashMap::new()
            }
        ))
    );
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                NamedVectors::default(),
                payload(json!({"a": 1})),
            )],
        )
        .await;
    assert_eq!(target.count(&name, None).await, 1);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Collection settings: validation, and reported as set

#[tokio::test]
async fn collection_settings_are_validated_and_reported_as_set() {
    use qdrant_client::qdrant::{
        CollectionParamsDiff, CreateCollection, HnswConfigDiff, OptimizersConfigDiff,
        UpdateCollection, WalConfigDiff,
    };

    let target = Target::new().await;
    let name = target.create_plain("settings", 2, Distance::Dot).await;
    let mut collections = target.collections();
    let invalid = |rule: &str| format!("Validation error in body: [{rule}]");

    // Creating: each rule, alone.
    let create = |change: &dyn Fn(&mut CreateCollection)| {
        let mut request = CreateCollectionBuilder::new(unique("invalid"))
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
            .build();
        change(&mut request);
        request
    };
    let creates: Vec<(CreateCollection, &str)> = vec![
        (
            create(&|r| {
                r.hnsw_config = Some(HnswConfigDiff {
                    ef_construct: Some(3),
                    ..HnswConfigDiff::default()
                })
            }),
            "hnsw_config.ef_construct: value 3 invalid, must be 4 or larger",
        ),
        (
            create(&|r| {
                r.wal_config = Some(WalConfigDiff {
                    wal_capacity_mb: Some(0),
                    ..WalConfigDiff::default()
                })
            }),
            "wal_config.wal_capacity_mb: value 0 invalid, must be 1 or larger",
        ),
        (
            create(&|r| {
                r.wal_config = Some(WalConfigDiff {
                    wal_retain_closed: Some(0),
                    ..WalConfigDiff::default()
                })
            }),
            "wal_config.wal_retain_closed: value 0 invalid, must be 1 or larger",
        ),
        (
            create(&|r| {
                r.optimizers_config = Some(OptimizersConfigDiff {
                    deleted_threshold: Some(-0.5),
                    ..OptimizersConfigDiff::default()
                })
            }),
            "optimizers_config.deleted_threshold: value -0.5 invalid, must be from 0.0 to 1.0",
        ),
        (
            create(&|r| r.shard_number = Some(0)),
            "shard_number: value 0 invalid, must be 1 or larger",
        ),
        (
            create(&|r| r.replication_factor = Some(0)),
            "replication_factor: value 0 invalid, must be 1 or larger",
        ),
        (
            create(&|r| r.write_consistency_factor = Some(0)),
            "write_consistency_factor: value 0 invalid, must be 1 or larger",
        ),
    ];
    for (request, rule) in creates {
        let refused = request.collection_name.clone();
        assert_status(
            collections.create(request).await,
            Code::InvalidArgument,
            &invalid(rule),
        );
        assert!(
            !target.collection_exists(&refused).await,
            "{refused} was created"
        );
    }

    // Updating: each rule, alone; validation comes before the collection is looked up.
    let update = |collection: &str, change: &dyn Fn(&mut UpdateCollection)| {
        let mut request = UpdateCollection {
            collection_name: collection.to_owned(),
            ..UpdateCollection::default()
        };
        change(&mut request);
        request
    };
    let optimizers = |diff: OptimizersConfigDiff| {
        move |r: &mut UpdateCollection| r.optimizers_config = Some(diff)
    };
    let updates: Vec<(UpdateCollection, &str)> = vec![
        (
            update(&name, &|r| {
                r.hnsw_config = Some(HnswConfigDiff {
                    ef_construct: Some(1),
                    ..HnswConfigDiff::default()
                })
            }),
            "hnsw_config.ef_construct: value 1 invalid, must be 4 or larger",
        ),
        (
            update(&unique("missing"), &|r| {
                r.hnsw_config = Some(HnswConfigDiff {
                    ef_construct: Some(1),
                    ..HnswConfigDiff::default()
                })
            }),
            "hnsw_config.ef_construct: value 1 invalid, must be 4 or larger",
        ),
        (
            update(
                &name,
                &optimizers(OptimizersConfigDiff {
                    deleted_threshold: Some(1.5),
                    ..OptimizersConfigDiff::default()
                }),
            ),
            "optimizers_config.deleted_threshold: value 1.5 invalid, must be from 0.0 to 1.0",
        ),
        (
            update(
                &name,
                &optimizers(OptimizersConfigDiff {
                    vacuum_min_vector_number: Some(10),
                    ..OptimizersConfigDiff::default()
                }),
            ),
            "optimizers_config.vacuum_min_vector_number: value 10 invalid, must be 100 or larger",
        ),
        (
            update(
                &name,
                &optimizers(OptimizersConfigDiff {
                    max_segment_size: Some(0),
                    ..OptimizersConfigDiff::default()
                }),
            ),
            "optimizers_config.max_segment_size: value 0 invalid, must be 1 or larger",
        ),
        (
            update(&name, &|r| {
                r.params = Some(CollectionParamsDiff {
                    replication_factor: Some(0),
                    ..CollectionParamsDiff::default()
                })
            }),
            "params.replication_factor: value 0 invalid, must be 1 or larger",
        ),
    ];
    for (request, rule) in updates {
        assert_status(
            collections.update(request).await,
            Code::InvalidArgument,
            &invalid(rule),
        );
    }

    // An indexing threshold of 0 (indexing off) is reported as 0.
    collections
        .update(update(
            &name,
            &optimizers(OptimizersConfigDiff {
                indexing_threshold: Some(0),
                ..OptimizersConfigDiff::default()
            }),
        ))
        .await
        .expect("turn indexing off");
    let optimizer_config = target
        .collection_info(&name)
        .await
        .config
        .expect("config")
        .optimizer_config
        .expect("optimizer config");
    assert_eq!(optimizer_config.indexing_threshold, Some(0));
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Points without ids or vectors, empty batches, zero limits

#[tokio::test]
async fn points_without_ids_or_vectors_and_zero_limits_are_refused_like_qdrant() {
    use qdrant_client::qdrant::{
        FacetCounts, PointVectors, PrefetchQuery, QueryPoints, UpdateBatchPoints,
        UpdatePointVectors,
    };

    let target = Target::new().await;
    let name = target.create_plain("no_ids", 2, Distance::Dot).await;
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                vec![1.0, 0.0],
                payload(json!({"g": "x"})),
            )],
        )
        .await;
    let mut points = target.points();
    let upsert = |point: PointStruct| {
        UpsertPointsBuilder::new(&name, vec![point])
            .wait(true)
            .build()
    };

    assert_status(
        points
            .upsert(upsert(PointStruct {
                id: None,
                vectors: Some(vec![1.0, 0.0].into()),
                payload: HashMap::new(),
            }))
            .await,
        Code::InvalidArgument,
        "Empty ID is not allowed",
    );
    assert_status(
        points
            .upsert(upsert(PointStruct {
                id: Some(2.into()),
                vectors: None,
                payload: HashMap::new(),
            }))
            .await,
        Code::InvalidArgument,
        "Expected some vectors",
    );
    assert_status(
        points
            .upsert(upsert(PointStruct::new(
                2,
                Vec::<f32>::new(),
                Payload::new(),
            )))
            .await,
        Code::InvalidArgument,
        "Wrong input: points[0].vector.vector: dense vector must not be empty",
    );
    let update_vectors = |point: PointVectors| UpdatePointVectors {
        collection_name: name.clone(),
        wait: Some(true),
        points: vec![point],
        ..UpdatePointVectors::default()
    };
    assert_status(
        points
            .update_vectors(update_vectors(PointVectors {
                id: None,
                vectors: Some(vec![0.0, 1.0].into()),
            }))
            .await,
        Code::InvalidArgument,
        "id is expected",
    );
    assert_status(
        points
            .update_vectors(update_vectors(PointVectors {
                id: Some(1.into()),
                vectors: None,
            }))
            .await,
        Code::InvalidArgument,
        "vectors is expected",
    );
    assert_status(
        points
            .update_batch(UpdateBatchPoints {
                collection_name: name.clone(),
                wait: Some(true),
                operations: Vec::new(),
                ..UpdateBatchPoints::default()
            })
            .await,
        Code::InvalidArgument,
        "Validation error in body: [operations: value [] invalid, must be at least 1 characters]",
    );
    assert_eq!(target.count(&name, None).await, 1);

    // A prefetch, at any depth, takes at least one point.
    let prefetch = |limit: u64, inner: Vec<PrefetchQuery>| PrefetchQuery {
        prefetch: inner,
        query: Some(Query::new_nearest(vec![1.0, 0.0])),
        limit: Some(limit),
        ..PrefetchQuery::default()
    };
    let query = |prefetch: Vec<PrefetchQuery>| QueryPoints {
        collection_name: name.clone(),
        prefetch,
        query: Some(Query::new_fusion(qdrant_client::qdrant::Fusion::Rrf)),
        ..QueryPoints::default()
    };
    assert_status(
        points
            .query(query(vec![prefetch(5, vec![]), prefetch(0, vec![])]))
            .await,
        Code::InvalidArgument,
        "Validation error in body: [prefetch[1].limit: value 0 invalid, must be 1 or larger]",
    );
    assert_status(
        points
            .query(query(vec![prefetch(5, vec![prefetch(0, vec![])])]))
            .await,
        Code::InvalidArgument,
        "Validation error in body: [prefetch[0].prefetch[0].limit: value 0 invalid, must be 1 or larger]",
    );
    // A facet of no values answers at once, index or not.
    let facet = points
        .facet(FacetCounts {
            collection_name: name.clone(),
            key: "g".to_owned(),
            limit: Some(0),
            ..FacetCounts::default()
        })
        .await
        .expect("facet with limit 0")
        .into_inner();
    assert!(facet.hits.is_empty(), "{facet:?}");
    target.drop_collection(&name).await;
}
