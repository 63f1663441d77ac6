//! Points RPCs beyond CRUD and plain search: recommend, discover, groups, the distance matrix,
//! named vector management, the query API's id inputs, formulas and fusion, and selectors.
//!
//! The "compass" collection holds ten unit vectors in 2-D at known angles, with Cosine
//! distance, so that every expected ranking follows from plain trigonometry: each test
//! computes it with the scoring rule Qdrant documents and compares ids, in order.

use qdrant_client::qdrant::{
    ContextExamplePair, ContextInput, ContextInputPair, CreateVectorNameRequest,
    DeleteVectorNameRequest, DenseVectorCreationConfig, DiscoverBatchPoints, DiscoverInput,
    DiscoverPoints, Expression, Formula, LookupLocation, Mmr, MultExpression, NearestInputWithMmr,
    PointGroup, PrefetchQuery, QueryBatchPoints, QueryPointGroups, QueryPoints,
    RecommendBatchPoints, RecommendInput, RecommendPointGroups, RecommendPoints, RecommendStrategy,
    SearchMatrixPoints, SearchPointGroups, SumExpression, TargetVector, Vector, VectorExample,
    VectorInput, WithLookup, WithPayloadSelector, WithVectorsSelector, group_id, query,
    target_vector, vector_example, with_payload_selector, with_vectors_selector,
};

use super::*;

/// (id, angle in degrees, color) of the compass points.
const COMPASS: [(u64, f64, &str); 10] = [
    (1, 0.0, "red"),
    (2, 15.0, "red"),
    (3, 35.0, "green"),
    (4, 60.0, "green"),
    (5, 90.0, "blue"),
    (6, 125.0, "blue"),
    (7, 170.0, "red"),
    (8, 200.0, "green"),
    (9, 250.0, "blue"),
    (10, 310.0, "red"),
];

fn unit(degrees: f64) -> Vec<f32> {
    let radians = degrees.to_radians();
    vec![radians.cos() as f32, radians.sin() as f32]
}

fn angle_of(id: u64) -> f64 {
    COMPASS
        .iter()
        .find(|(i, ..)| *i == id)
        .expect("a compass id")
        .1
}

fn similarity(a: f64, b: f64) -> f64 {
    (a - b).to_radians().cos()
}

/// Ids other than `exclude`, best first by `score`.
fn ranked(exclude: &[u64], score: impl Fn(f64) -> f64) -> Vec<u64> {
    let mut ids: Vec<(u64, f64)> = COMPASS
        .iter()
        .filter(|(id, ..)| !exclude.contains(id))
        .map(|(id, angle, _)| (*id, score(*angle)))
        .collect();
    ids.sort_by(|a, b| b.1.total_cmp(&a.1));
    ids.into_iter().map(|(id, _)| id).collect()
}

/// The direction of `2 * avg(positive) - avg(negative)` (or `avg(positive)`), in degrees.
fn average_direction(positive: &[u64], negative: &[u64]) -> f64 {
    let avg = |ids: &[u64]| {
        let (x, y) = ids.iter().fold((0.0, 0.0), |(x, y), id| {
            let r = angle_of(*id).to_radians();
            (x + r.cos(), y + r.sin())
        });
        (x / ids.len() as f64, y / ids.len() as f64)
    };
    let (px, py) = avg(positive);
    let (x, y) = if negative.is_empty() {
        (px, py)
    } else {
        let (nx, ny) = avg(negative);
        (2.0 * px - nx, 2.0 * py - ny)
    };
    y.atan2(x).to_degrees()
}

/// Qdrant's best_score: the best positive similarity when it beats the best negative one,
/// else minus the best negative similarity (both through a monotonic sigmoid).
fn best_score(positive: &[u64], negative: &[u64], angle: f64) -> f64 {
    let best = |ids: &[u64]| {
        ids.iter()
            .map(|id| similarity(angle, angle_of(*id)))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let (pos, neg) = (best(positive), best(negative));
    if pos > neg { 10.0 + pos } else { -10.0 - neg }
}

/// Qdrant's discovery score: +1 per context pair whose positive is nearer than its negative,
/// −1 per other pair, plus the similarity to the target squeezed into (0, 1).
fn discover_score(target: f64, pairs: &[(f64, f64)], angle: f64) -> f64 {
    let rank: f64 = pairs
        .iter()
        .map(|(p, n)| {
            if similarity(angle, *p) > similarity(angle, *n) {
                1.0
            } else {
                -1.0
            }
        })
        .sum();
    rank * 10.0 + similarity(angle, target)
}

async fn seed_compass(target: &Target, prefix: &str) -> String {
    let name = target.create_plain(prefix, 2, Distance::Cosine).await;
    let points = COMPASS
        .iter()
        .map(|(id, angle, color)| {
            PointStruct::new(
                *id,
                unit(*angle),
                payload(json!({"color": color, "angle": *angle as i64, "tags": [color, "any"]})),
            )
        })
        .collect();
    target.upsert(&name, points).await;
    name
}

fn pid(id: u64) -> PointId {
    PointId::from(id)
}

fn recommend(collection: &str, positive: &[u64], negative: &[u64], limit: u64) -> RecommendPoints {
    RecommendPoints {
        collection_name: collection.to_owned(),
        positive: positive.iter().copied().map(pid).collect(),
        negative: negative.iter().copied().map(pid).collect(),
        limit,
        ..Default::default()
    }
}

fn id_example(id: u64) -> VectorExample {
    VectorExample {
        example: Some(vector_example::Example::Id(pid(id))),
    }
}

fn pair(positive: u64, negative: u64) -> ContextExamplePair {
    ContextExamplePair {
        positive: Some(id_example(positive)),
        negative: Some(id_example(negative)),
    }
}

fn discover(
    collection: &str,
    target: Option<u64>,
    pairs: &[(u64, u64)],
    limit: u64,
) -> DiscoverPoints {
    DiscoverPoints {
        collection_name: collection.to_owned(),
        target: target.map(|id| TargetVector {
            target: Some(target_vector::Target::Single(id_example(id))),
        }),
        context: pairs.iter().map(|(p, n)| pair(*p, *n)).collect(),
        limit,
        ..Default::default()
    }
}

fn query_points(collection: &str, query: query::Variant, limit: u64) -> QueryPoints {
    QueryPoints {
        collection_name: collection.to_owned(),
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query),
        }),
        limit: Some(limit),
        ..Default::default()
    }
}

fn id_input(id: u64) -> VectorInput {
    VectorInput::new_id(pid(id))
}

fn group_key(group: &PointGroup) -> Json {
    match group.id.as_ref().and_then(|id| id.kind.clone()) {
        Some(group_id::Kind::StringValue(text)) => json!(text),
        Some(group_id::Kind::UnsignedValue(value)) => json!(value),
        Some(group_id::Kind::IntegerValue(value)) => json!(value),
        None => Json::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Recommend

#[tokio::test]
async fn recommend_by_ids_excludes_the_examples_and_follows_each_strategy() {
    let target = Target::new().await;
    let name = seed_compass(&target, "recommend").await;
    let mut points = target.points();

    // average_vector (the default): nearest to 2·avg(positive) − avg(negative).
    let hits = points
        .recommend(recommend(&name, &[2], &[10], 4))
        .await
        .expect("recommend")
        .into_inner()
        .result;
    let direction = average_direction(&[2], &[10]);
    let expected = ranked(&[2, 10], |a| similarity(a, direction));
    assert_eq!(num_ids(&hits), expected[..4]);

    // Two positives, no negative: their mean direction.
    let hits = points
        .recommend(recommend(&name, &[1, 4], &[], 3))
        .await
        .expect("recommend")
        .into_inner()
        .result;
    let direction = average_direction(&[1, 4], &[]);
    assert_eq!(
        num_ids(&hits),
        ranked(&[1, 4], |a| similarity(a, direction))[..3]
    );

    // best_score: points nearer a positive than any negative first.
    let mut request = recommend(&name, &[4], &[1], 9);
    request.strategy = Some(RecommendStrategy::BestScore as i32);
    let hits = points
        .recommend(request)
        .await
        .expect("best_score")
        .into_inner()
        .result;
    assert_eq!(
        num_ids(&hits),
        ranked(&[1, 4], |a| best_score(&[4], &[1], a))
    );
    assert!(
        hits.iter().any(|hit| hit.score < 0.0),
        "negative-side points score below 0"
    );

    // best_score with only negatives: the farthest from them first.
    let mut request = recommend(&name, &[], &[5], 3);
    request.strategy = Some(RecommendStrategy::BestScore as i32);
    let hits = points
        .recommend(request)
        .await
        .expect("best_score with negatives only")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), ranked(&[5], |a| -similarity(a, 90.0))[..3]);

    // sum_scores: Σ positive similarities − Σ negative similarities.
    let mut request = recommend(&name, &[3, 6], &[9], 4);
    request.strategy = Some(RecommendStrategy::SumScores as i32);
    let hits = points
        .recommend(request)
        .await
        .expect("sum_scores")
        .into_inner()
        .result;
    let sum = |a: f64| similarity(a, 35.0) + similarity(a, 125.0) - similarity(a, 250.0);
    assert_eq!(num_ids(&hits), ranked(&[3, 6, 9], sum)[..4]);
    let top = &hits[0];
    let expected_score = sum(angle_of(num_id(top.id.as_ref())));
    assert!((f64::from(top.score) - expected_score).abs() < 1e-4);

    // Filter, offset and score_threshold apply as in search.
    let mut request = recommend(&name, &[1], &[], 10);
    request.filter = Some(Filter::must([Condition::matches(
        "color",
        "red".to_string(),
    )]));
    request.offset = Some(1);
    let hits = points
        .recommend(request)
        .await
        .expect("filtered recommend")
        .into_inner()
        .result;
    // Red points but 1, nearest to 0° first: 2 (15°), 10 (300°), 7 (160°); offset 1 skips 2.
    assert_eq!(num_ids(&hits), [10, 7]);
    let mut request = recommend(&name, &[1], &[], 10);
    request.score_threshold = Some(0.5);
    let hits = points
        .recommend(request)
        .await
        .expect("recommend with threshold")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2, 3, 10], "cos > 0.5 within 60° of 0°");
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn recommend_takes_raw_vectors_named_vectors_and_lookup_from() {
    let target = Target::new().await;
    let name = seed_compass(&target, "reco_vectors").await;
    let mut points = target.points();

    // Raw example vectors: nothing is excluded.
    let request = RecommendPoints {
        collection_name: name.clone(),
        positive_vectors: vec![Vector::from(unit(20.0))],
        limit: 3,
        with_payload: Some(true.into()),
        with_vectors: Some(true.into()),
        ..Default::default()
    };
    let hits = points
        .recommend(request)
        .await
        .expect("by vector")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2, 3, 1]);
    assert_eq!(payload_json(hits[0].payload.clone())["color"], json!("red"));
    let vector = dense(hits[0].vectors.as_ref(), "");
    assert!((vector[0] - 15f32.to_radians().cos()).abs() < 1e-5);

    // Ids looked up in another collection, by its vector named "dir": the ids of the searched
    // collection are not excluded then.
    let other = target
        .create(
            "reco_lookup",
            CreateCollectionBuilder::new("").vectors_config({
                let mut config = VectorsConfigBuilder::default();
                config
                    .add_named_vector_params("dir", VectorParamsBuilder::new(2, Distance::Cosine));
                config
            }),
        )
        .await;
    target
        .upsert(
            &other,
            vec![PointStruct::new(
                1,
                NamedVectors::default().add_vector("dir", unit(160.0)),
                Payload::new(),
            )],
        )
        .await;
    let mut request = recommend(&name, &[1], &[], 3);
    request.lookup_from = Some(LookupLocation {
        collection_name: other.clone(),
        vector_name: Some("dir".to_owned()),
        shard_key_selector: None,
    });
    let hits = points
        .recommend(request)
        .await
        .expect("lookup_from")
        .into_inner()
        .result;
    assert_eq!(
        num_ids(&hits),
        [7, 6, 8],
        "nearest to 160°, point 1 of the searched collection allowed"
    );

    // An id that the lookup collection lacks.
    let mut request = recommend(&name, &[7], &[], 3);
    request.lookup_from = Some(LookupLocation {
        collection_name: other.clone(),
        vector_name: Some("dir".to_owned()),
        shard_key_selector: None,
    });
    let status = points.recommend(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Not found: No point with id 7 found");

    // A lookup collection that does not exist.
    let missing = unique("missing_lookup");
    let mut request = recommend(&name, &[1], &[], 3);
    request.lookup_from = Some(LookupLocation {
        collection_name: missing.clone(),
        vector_name: None,
        shard_key_selector: None,
    });
    let status = points.recommend(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(&missing), "{}", status.message());

    target.drop_collection(&other).await;
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn recommend_batch_answers_each_request_in_order() {
    let target = Target::new().await;
    let name = seed_compass(&target, "reco_batch").await;
    let batch = RecommendBatchPoints {
        collection_name: name.clone(),
        recommend_points: vec![
            recommend(&name, &[1], &[], 2),
            recommend(&name, &[5], &[], 2),
            recommend(&name, &[9], &[], 0),
        ],
        ..Default::default()
    };
    let result = target
        .points()
        .recommend_batch(batch)
        .await
        .expect("recommend batch")
        .into_inner()
        .result;
    assert_eq!(result.len(), 3);
    assert_eq!(num_ids(&result[0].result), [2, 3]);
    assert_eq!(num_ids(&result[1].result), [4, 6]);
    assert!(result[2].result.is_empty(), "limit 0 answers no point");
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn recommend_errors_read_like_qdrant() {
    let target = Target::new().await;
    let name = seed_compass(&target, "reco_errors").await;
    let mut points = target.points();

    let status = points
        .recommend(recommend(&name, &[], &[2], 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: At least one positive vector ID required with this strategy"
    );

    let mut request = recommend(&name, &[], &[], 3);
    request.strategy = Some(RecommendStrategy::BestScore as i32);
    let status = points.recommend(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: At least one positive or negative vector ID required with this strategy"
    );

    let status = points
        .recommend(recommend(&name, &[1, 999], &[], 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Not found: No point with id 999 found");

    let request = RecommendPoints {
        collection_name: name.clone(),
        positive_vectors: vec![Vector::from(vec![1.0, 0.0, 0.0])],
        limit: 3,
        ..Default::default()
    };
    let status = points.recommend(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("expected dim: 2, got 3"),
        "{}",
        status.message()
    );

    let missing = unique("missing");
    let status = points
        .recommend(recommend(&missing, &[1], &[], 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        format!("Not found: Collection `{missing}` doesn't exist!")
    );

    let hits = points
        .recommend(recommend(&name, &[1], &[], 0))
        .await
        .expect("limit 0")
        .into_inner()
        .result;
    assert!(hits.is_empty());
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Discover

#[tokio::test]
async fn discover_ranks_by_context_pairs_then_target_and_context_search_needs_no_target() {
    let target = Target::new().await;
    let name = seed_compass(&target, "discover").await;
    let mut points = target.points();

    // Target 90°, context: nearer 35° than 200°. Rank (±1 per pair) first, then target
    // similarity.
    let hits = points
        .discover(discover(&name, Some(5), &[(3, 8)], 8))
        .await
        .expect("discover")
        .into_inner()
        .result;
    let score = |a: f64| discover_score(90.0, &[(35.0, 200.0)], a);
    assert_eq!(num_ids(&hits), ranked(&[3, 5, 8], score)[..7]);
    assert!(hits[0].score > 1.0, "a satisfied pair adds 1 to the score");

    // Context only: the points on the positive side all score 0, the others below.
    let hits = points
        .discover(discover(&name, None, &[(1, 6)], 10))
        .await
        .expect("context search")
        .into_inner()
        .result;
    let positive_side: BTreeSet<u64> = COMPASS
        .iter()
        .filter(|(id, angle, _)| {
            ![1, 6].contains(id) && similarity(*angle, 0.0) > similarity(*angle, 125.0)
        })
        .map(|(id, ..)| *id)
        .collect();
    let zero: BTreeSet<u64> = hits
        .iter()
        .filter(|hit| hit.score == 0.0)
        .map(|hit| num_id(hit.id.as_ref()))
        .collect();
    assert_eq!(zero, positive_side);
    let rest: Vec<u64> = num_ids(&hits[positive_side.len()..]);
    let mut expected: Vec<u64> = ranked(&[1, 6], |a| similarity(a, 0.0) - similarity(a, 125.0))
        .into_iter()
        .filter(|id| !positive_side.contains(id))
        .collect();
    expected.truncate(rest.len());
    assert_eq!(rest, expected);

    // Batch, in order.
    let batch = DiscoverBatchPoints {
        collection_name: name.clone(),
        discover_points: vec![
            discover(&name, Some(1), &[(2, 7)], 2),
            discover(&name, Some(9), &[(8, 4)], 2),
        ],
        ..Default::default()
    };
    let result = target
        .points()
        .discover_batch(batch)
        .await
        .expect("discover batch")
        .into_inner()
        .result;
    assert_eq!(result.len(), 2);
    assert_eq!(
        num_ids(&result[0].result),
        ranked(&[1, 2, 7], |a| discover_score(0.0, &[(15.0, 170.0)], a))[..2]
    );
    assert_eq!(
        num_ids(&result[1].result),
        ranked(&[4, 8, 9], |a| discover_score(250.0, &[(200.0, 60.0)], a))[..2]
    );

    // Neither target nor context.
    let status = points
        .discover(discover(&name, None, &[], 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: target and/or context_pairs must be specified"
    );
    // limit must be at least 1.
    let status = points
        .discover(discover(&name, Some(1), &[], 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Validation error in body: [limit: value 0 invalid, must be 1 or larger]"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Query API with ids

#[tokio::test]
async fn query_resolves_point_ids_everywhere_and_excludes_them() {
    let target = Target::new().await;
    let name = seed_compass(&target, "query_ids").await;
    let mut points = target.points();

    // Nearest to a point: the point itself is left out.
    let hits = points
        .query(query_points(&name, query::Variant::Nearest(id_input(3)), 3))
        .await
        .expect("nearest by id")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2, 4, 1]);

    // Recommend input (best_score) with ids and a raw vector.
    let recommend = RecommendInput {
        positive: vec![id_input(4)],
        negative: vec![VectorInput::from(unit(0.0))],
        strategy: Some(RecommendStrategy::BestScore as i32),
    };
    let hits = points
        .query(query_points(&name, query::Variant::Recommend(recommend), 9))
        .await
        .expect("recommend query")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), ranked(&[4], |a| best_score(&[4], &[1], a)));

    // Discover and context inputs.
    let discover = DiscoverInput {
        target: Some(id_input(5)),
        context: Some(ContextInput {
            pairs: vec![ContextInputPair {
                positive: Some(id_input(3)),
                negative: Some(id_input(8)),
            }],
        }),
    };
    let hits = points
        .query(query_points(&name, query::Variant::Discover(discover), 3))
        .await
        .expect("discover query")
        .into_inner()
        .result;
    let score = |a: f64| discover_score(90.0, &[(35.0, 200.0)], a);
    assert_eq!(num_ids(&hits), ranked(&[3, 5, 8], score)[..3]);

    // Ids in a prefetch are excluded from the final result too.
    let request = QueryPoints {
        collection_name: name.clone(),
        prefetch: vec![PrefetchQuery {
            query: Some(qdrant_client::qdrant::Query {
                variant: Some(query::Variant::Nearest(id_input(1))),
            }),
            limit: Some(4),
            ..Default::default()
        }],
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Nearest(VectorInput::from(unit(60.0)))),
        }),
        limit: Some(10),
        ..Default::default()
    };
    let hits = points
        .query(request)
        .await
        .expect("prefetch by id")
        .into_inner()
        .result;
    // Prefetch: nearest to 0° but 1 → 2, 3, 10, 4; rescored towards 60°.
    assert_eq!(num_ids(&hits), [4, 3, 2, 10]);

    // A missing id, and an id whose point lacks the vector used.
    let status = points
        .query(query_points(
            &name,
            query::Variant::Nearest(id_input(77)),
            3,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Not found: No point with id 77 found");

    // Average recommend with no positive example.
    let recommend = RecommendInput {
        positive: vec![],
        negative: vec![id_input(1)],
        strategy: None,
    };
    let status = points
        .query(query_points(&name, query::Variant::Recommend(recommend), 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("Positive vectors should not be empty"),
        "{}",
        status.message()
    );

    // Batch.
    let batch = QueryBatchPoints {
        collection_name: name.clone(),
        query_points: vec![
            query_points(&name, query::Variant::Nearest(id_input(1)), 1),
            query_points(&name, query::Variant::Nearest(id_input(6)), 2),
        ],
        ..Default::default()
    };
    let result = points
        .query_batch(batch)
        .await
        .expect("query batch")
        .into_inner()
        .result;
    assert_eq!(num_ids(&result[0].result), [2]);
    assert_eq!(num_ids(&result[1].result), [5, 7]);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn query_validation_wording_matches_qdrant() {
    let target = Target::new().await;
    let name = seed_compass(&target, "query_validation").await;
    let mut points = target.points();

    let mut request = query_points(
        &name,
        query::Variant::Nearest(VectorInput::from(unit(0.0))),
        3,
    );
    request.limit = Some(0);
    let status = points.query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Validation error in body: [limit: value 0 invalid, must be 1 or larger]"
    );

    let request = QueryPoints {
        collection_name: name.clone(),
        prefetch: vec![PrefetchQuery {
            limit: Some(3),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = points.query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: A query is needed to merge the prefetches. Can't have prefetches without defining a query."
    );

    let request = QueryPoints {
        collection_name: name.clone(),
        score_threshold: Some(0.5),
        ..Default::default()
    };
    let status = points.query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: A query is needed to use the score_threshold. Can't have score_threshold without defining a query."
    );

    let status = points
        .search(SearchPointsBuilder::new(&name, unit(0.0), 0).build())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Validation error in body: [limit: value 0 invalid, must be 1 or larger]"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Formula, MMR and fusion

#[tokio::test]
async fn formula_rescores_prefetched_points_with_payload_variables() {
    let target = Target::new().await;
    let name = seed_compass(&target, "formula").await;
    // score = $score + angle / 1000 · 0 + (color == "blue") · 10
    let blue = Expression {
        variant: Some(qdrant_client::qdrant::expression::Variant::Condition(
            Condition::matches("color", "blue".to_string()),
        )),
    };
    let ten_if_blue = Expression {
        variant: Some(qdrant_client::qdrant::expression::Variant::Mult(
            MultExpression {
                mult: vec![
                    Expression {
                        variant: Some(qdrant_client::qdrant::expression::Variant::Constant(10.0)),
                    },
                    blue,
                ],
            },
        )),
    };
    let formula = Formula {
        expression: Some(Expression {
            variant: Some(qdrant_client::qdrant::expression::Variant::Sum(
                SumExpression {
                    sum: vec![
                        Expression {
                            variant: Some(qdrant_client::qdrant::expression::Variant::Variable(
                                "$score".to_owned(),
                            )),
                        },
                        ten_if_blue,
                    ],
                },
            )),
        }),
        defaults: HashMap::new(),
    };
    let request = QueryPoints {
        collection_name: name.clone(),
        prefetch: vec![PrefetchQuery {
            query: Some(qdrant_client::qdrant::Query {
                variant: Some(query::Variant::Nearest(VectorInput::from(unit(0.0)))),
            }),
            limit: Some(10),
            ..Default::default()
        }],
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Formula(formula)),
        }),
        limit: Some(4),
        ..Default::default()
    };
    let hits = target
        .points()
        .query(request)
        .await
        .expect("formula query")
        .into_inner()
        .result;
    // Blue points first (5 at 90°, 9 at 250°, 6 at 125°, by similarity to 0°), then the rest.
    assert_eq!(num_ids(&hits), [5, 9, 6, 1]);
    assert!((hits[0].score - (10.0 + similarity(90.0, 0.0) as f32)).abs() < 1e-4);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn mmr_trades_relevance_for_diversity() {
    let target = Target::new().await;
    let name = seed_compass(&target, "mmr").await;
    let mut points = target.points();
    let nearest = |diversity: f32| {
        query_points(
            &name,
            query::Variant::NearestWithMmr(NearestInputWithMmr {
                nearest: Some(VectorInput::from(unit(10.0))),
                mmr: Some(Mmr {
                    diversity: Some(diversity),
                    candidates_limit: Some(10),
                }),
            }),
            3,
        )
    };
    // No diversity: plain nearest neighbours.
    let hits = points
        .query(nearest(0.0))
        .await
        .expect("mmr 0")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2, 1, 3]);
    // Full diversity: after the best one, each next point is the least similar to those
    // already selected.
    let hits = points
        .query(nearest(1.0))
        .await
        .expect("mmr 1")
        .into_inner()
        .result;
    let ids = num_ids(&hits);
    assert_eq!(ids[0], 2);
    assert!(
        ids[1..].iter().all(|id| ![1, 3].contains(id)),
        "diverse picks skip the neighbours of the first: {ids:?}"
    );
    // Diversity is a fraction.
    let status = points.query(nearest(1.5)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("must be from 0.0 to 1.0"),
        "{}",
        status.message()
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn fusion_merges_prefetches_and_refuses_a_using_name() {
    let target = Target::new().await;
    let name = seed_compass(&target, "fusion").await;
    let prefetch = |angle: f64| PrefetchQuery {
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Nearest(VectorInput::from(unit(angle)))),
        }),
        limit: Some(3),
        ..Default::default()
    };
    let mut request = QueryPoints {
        collection_name: name.clone(),
        prefetch: vec![prefetch(0.0), prefetch(40.0)],
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Fusion(
                qdrant_client::qdrant::Fusion::Rrf as i32,
            )),
        }),
        limit: Some(10),
        ..Default::default()
    };
    let hits = target
        .points()
        .query(request.clone())
        .await
        .expect("rrf")
        .into_inner()
        .result;
    // Ranks: 0° gives 1, 2, 3; 40° gives 3, 4, 2. Reciprocal ranks add up: 3 (1st and 3rd)
    // beats 2 (2nd and 3rd), then 1 (1st once) beats 4 (2nd once).
    assert_eq!(num_ids(&hits), [3, 2, 1, 4]);

    // Weighted RRF with a k of its own; k must be at least 1.
    let mut weighted = request.clone();
    weighted.query = Some(qdrant_client::qdrant::Query {
        variant: Some(query::Variant::Rrf(qdrant_client::qdrant::Rrf {
            k: Some(0),
            weights: vec![],
        })),
    });
    let status = target.points().query(weighted).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("value 0 invalid, must be 1 or larger"),
        "{}",
        status.message()
    );

    request.using = Some("dir".to_owned());
    let status = target.points().query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: Fusion queries cannot be combined with the 'using' field."
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Groups

fn groups_summary(groups: &[PointGroup]) -> Vec<(Json, Vec<u64>)> {
    groups
        .iter()
        .map(|group| (group_key(group), num_ids(&group.hits)))
        .collect()
}

#[tokio::test]
async fn search_groups_group_hits_by_a_payload_key_and_look_groups_up() {
    let target = Target::new().await;
    let name = seed_compass(&target, "groups").await;
    let mut points = target.points();

    let request = SearchPointGroups {
        collection_name: name.clone(),
        vector: unit(0.0),
        limit: 2,
        group_size: 2,
        group_by: "color".to_owned(),
        with_payload: Some(WithPayloadSelector {
            selector_options: Some(with_payload_selector::SelectorOptions::Include(
                PayloadIncludeSelector {
                    fields: vec!["angle".to_owned()],
                },
            )),
        }),
        ..Default::default()
    };
    let result = points
        .search_groups(request)
        .await
        .expect("search groups")
        .into_inner()
        .result
        .expect("groups");
    // Nearest to 0°: 1 red, 2 red, 3 green, 10 red, 4 green …
    assert_eq!(
        groups_summary(&result.groups),
        [(json!("red"), vec![1, 2]), (json!("green"), vec![3, 4])]
    );
    assert_eq!(
        payload_json(result.groups[0].hits[0].payload.clone()),
        json!({"angle": 0})
    );
    assert!(result.groups.iter().all(|group| group.lookup.is_none()));

    // Integer keys, and a lookup collection whose point ids are the group keys.
    let lookup = target
        .create_plain("groups_lookup", 2, Distance::Cosine)
        .await;
    target
        .upsert(
            &lookup,
            vec![
                PointStruct::new(0, unit(0.0), payload(json!({"label": "east"}))),
                PointStruct::new(90, unit(90.0), payload(json!({"label": "north"}))),
            ],
        )
        .await;
    let request = SearchPointGroups {
        collection_name: name.clone(),
        vector: unit(45.0),
        limit: 3,
        group_size: 1,
        group_by: "angle".to_owned(),
        with_lookup: Some(WithLookup {
            collection: lookup.clone(),
            with_payload: None,
            with_vectors: None,
        }),
        ..Default::default()
    };
    let result = points
        .search_groups(request)
        .await
        .expect("groups with lookup")
        .into_inner()
        .result
        .expect("groups");
    // 35°, 60°, then 15° (cos 30°) before 90° (cos 45°).
    assert_eq!(
        groups_summary(&result.groups),
        [
            (json!(35), vec![3]),
            (json!(60), vec![4]),
            (json!(15), vec![2])
        ]
    );
    assert!(
        result.groups.iter().all(|group| group.lookup.is_none()),
        "no lookup point 35, 60 or 15"
    );
    let request = SearchPointGroups {
        collection_name: name.clone(),
        vector: unit(80.0),
        limit: 1,
        group_size: 1,
        group_by: "angle".to_owned(),
        with_lookup: Some(WithLookup {
            collection: lookup.clone(),
            with_payload: None,
            with_vectors: None,
        }),
        ..Default::default()
    };
    let result = points
        .search_groups(request)
        .await
        .expect("groups with lookup")
        .into_inner()
        .result
        .expect("groups");
    let group = &result.groups[0];
    assert_eq!(group_key(group), json!(90));
    let looked_up = group.lookup.as_ref().expect("the lookup point");
    assert_eq!(num_id(looked_up.id.as_ref()), 90);
    assert_eq!(
        payload_json(looked_up.payload.clone()),
        json!({"label": "north"})
    );

    // Validation.
    let request = SearchPointGroups {
        collection_name: name.clone(),
        vector: unit(0.0),
        limit: 2,
        group_size: 0,
        group_by: "color".to_owned(),
        ..Default::default()
    };
    let status = points.search_groups(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Validation error in body: [group_size: value 0 invalid, must be 1 or larger]"
    );
    target.drop_collection(&lookup).await;
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn recommend_and_query_groups_group_like_search_groups() {
    let target = Target::new().await;
    let name = seed_compass(&target, "more_groups").await;
    let mut points = target.points();

    let request = RecommendPointGroups {
        collection_name: name.clone(),
        positive: vec![pid(1)],
        limit: 3,
        group_size: 2,
        group_by: "color".to_owned(),
        ..Default::default()
    };
    let result = points
        .recommend_groups(request)
        .await
        .expect("recommend groups")
        .into_inner()
        .result
        .expect("groups");
    // Nearest to 0° but 1: 2 red, 3 green, 10 red, 4 green, 5 blue, 9 blue.
    assert_eq!(
        groups_summary(&result.groups),
        [
            (json!("red"), vec![2, 10]),
            (json!("green"), vec![3, 4]),
            (json!("blue"), vec![5, 9])
        ]
    );

    let request = QueryPointGroups {
        collection_name: name.clone(),
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Nearest(id_input(5))),
        }),
        group_by: "tags".to_owned(),
        limit: Some(10),
        group_size: Some(10),
        with_vectors: Some(WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Enable(true)),
        }),
        ..Default::default()
    };
    let result = points
        .query_groups(request)
        .await
        .expect("query groups")
        .into_inner()
        .result
        .expect("groups");
    // Every point has the tag "any" besides its color, so each lands in two groups; hits
    // come nearest to 90° first, point 5 excluded.
    let order = ranked(&[5], |a| similarity(a, 90.0));
    let expected: HashMap<Json, Vec<u64>> = ["any", "red", "green", "blue"]
        .into_iter()
        .map(|tag| {
            let members: Vec<u64> = order
                .iter()
                .copied()
                .filter(|id| tag == "any" || COMPASS.iter().any(|(i, _, c)| i == id && *c == tag))
                .collect();
            (json!(tag), members)
        })
        .collect();
    let got: HashMap<Json, Vec<u64>> = groups_summary(&result.groups).into_iter().collect();
    assert_eq!(got, expected);
    let any = result
        .groups
        .iter()
        .find(|group| group_key(group) == json!("any"))
        .expect("group any");
    assert_eq!(num_id(any.hits[0].id.as_ref()), 4);
    let vector = dense(any.hits[0].vectors.as_ref(), "");
    assert!((vector[1] - 60f32.to_radians().sin()).abs() < 1e-5);

    // Defaults: limit 10 groups of 3.
    let request = QueryPointGroups {
        collection_name: name.clone(),
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Nearest(VectorInput::from(unit(0.0)))),
        }),
        group_by: "color".to_owned(),
        ..Default::default()
    };
    let result = points
        .query_groups(request)
        .await
        .expect("query groups with defaults")
        .into_inner()
        .result
        .expect("groups");
    assert_eq!(result.groups.len(), 3);
    assert!(result.groups.iter().all(|group| group.hits.len() == 3));
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Distance matrix

#[tokio::test]
async fn search_matrix_pairs_and_offsets_link_each_sample_to_its_nearest() {
    let target = Target::new().await;
    let name = seed_compass(&target, "matrix").await;
    let mut points = target.points();
    // Sampling all 10 points makes the sample deterministic.
    let request = SearchMatrixPoints {
        collection_name: name.clone(),
        sample: Some(10),
        limit: Some(2),
        ..Default::default()
    };
    let pairs = points
        .search_matrix_pairs(request.clone())
        .await
        .expect("matrix pairs")
        .into_inner()
        .result
        .expect("pairs")
        .pairs;
    assert_eq!(pairs.len(), 20);
    for (index, (id, angle, _)) in COMPASS.iter().enumerate() {
        let own: Vec<_> = pairs[index * 2..index * 2 + 2].iter().collect();
        assert!(own.iter().all(|pair| num_id(pair.a.as_ref()) == *id));
        let expected = ranked(&[*id], |a| similarity(a, *angle));
        let got: Vec<u64> = own.iter().map(|pair| num_id(pair.b.as_ref())).collect();
        assert_eq!(got, expected[..2], "nearest of {id}");
        let score = f64::from(own[0].score);
        assert!((score - similarity(angle_of(got[0]), *angle)).abs() < 1e-4);
    }

    let offsets = points
        .search_matrix_offsets(request)
        .await
        .expect("matrix offsets")
        .into_inner()
        .result
        .expect("offsets");
    let ids: Vec<u64> = offsets.ids.iter().map(|id| num_id(Some(id))).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>(), "sample ids sorted");
    assert_eq!(offsets.offsets_row.len(), 20);
    assert_eq!(offsets.offsets_col.len(), 20);
    assert_eq!(offsets.scores.len(), 20);
    for ((row, col), pair) in offsets
        .offsets_row
        .iter()
        .zip(&offsets.offsets_col)
        .zip(&pairs)
    {
        assert_eq!(ids[*row as usize], num_id(pair.a.as_ref()));
        assert_eq!(ids[*col as usize], num_id(pair.b.as_ref()));
    }

    // A filter narrows the sample.
    let request = SearchMatrixPoints {
        collection_name: name.clone(),
        filter: Some(Filter::must([Condition::matches(
            "color",
            "blue".to_string(),
        )])),
        sample: Some(10),
        limit: Some(5),
        ..Default::default()
    };
    let offsets = points
        .search_matrix_offsets(request)
        .await
        .expect("filtered matrix")
        .into_inner()
        .result
        .expect("offsets");
    let ids: Vec<u64> = offsets.ids.iter().map(|id| num_id(Some(id))).collect();
    assert_eq!(ids, [5, 6, 9]);
    assert_eq!(
        offsets.scores.len(),
        6,
        "each of 3 samples has 2 neighbours in the sample"
    );

    // Validation and unknown vectors.
    let request = SearchMatrixPoints {
        collection_name: name.clone(),
        sample: Some(1),
        ..Default::default()
    };
    let status = points.search_matrix_pairs(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Validation error in body: [sample: value 1 invalid, must be 2 or larger]"
    );
    let request = SearchMatrixPoints {
        collection_name: name.clone(),
        using: Some("nope".to_owned()),
        ..Default::default()
    };
    let status = points.search_matrix_pairs(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Wrong input: Vector with name nope is not configured in this collection"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Named vectors

#[tokio::test]
async fn vector_names_can_be_added_to_and_removed_from_a_collection() {
    let target = Target::new().await;
    let name = target
        .create(
            "vector_names",
            CreateCollectionBuilder::new("").vectors_config({
                let mut config = VectorsConfigBuilder::default();
                config.add_named_vector_params("a", VectorParamsBuilder::new(2, Distance::Dot));
                config
            }),
        )
        .await;
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                NamedVectors::default().add_vector("a", vec![1.0, 0.0]),
                Payload::new(),
            )],
        )
        .await;
    let mut points = target.points();
    let create = |distance: Distance| CreateVectorNameRequest {
        collection_name: name.clone(),
        wait: Some(true),
        vector_name: "b".to_owned(),
        vector_config: Some(
            qdrant_client::qdrant::create_vector_name_request::VectorConfig::DenseConfig(
                DenseVectorCreationConfig {
                    size: 3,
                    distance: distance as i32,
                    multivector_config: None,
                    datatype: None,
                },
            ),
        ),
        ..Default::default()
    };
    points
        .create_vector_name(create(Distance::Cosine))
        .await
        .expect("create vector name");
    // The same configuration again is accepted; another one is not.
    points
        .create_vector_name(create(Distance::Cosine))
        .await
        .expect("create the same vector name again");
    let status = points
        .create_vector_name(create(Distance::Euclid))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("`b` already exists"),
        "{}",
        status.message()
    );

    let info = target
        .collections()
        .get(GetCollectionInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .expect("collection info")
        .into_inner()
        .result
        .expect("info");
    let vectors = info
        .config
        .and_then(|c| c.params)
        .and_then(|p| p.vectors_config)
        .and_then(|v| v.config);
    let Some(qdrant_client::qdrant::vectors_config::Config::ParamsMap(map)) = vectors else {
        panic!("named vectors config expected, got {vectors:?}");
    };
    assert_eq!(map.map["b"].size, 3);

    // The new vector takes points and searches.
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                2,
                NamedVectors::default()
                    .add_vector("a", vec![0.0, 1.0])
                    .add_vector("b", vec![0.0, 0.0, 1.0]),
                Payload::new(),
            )],
        )
        .await;
    let hits = points
        .search(
            SearchPointsBuilder::new(&name, vec![0.0, 0.0, 1.0], 5)
                .vector_name("b")
                .build(),
        )
        .await
        .expect("search the new vector")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2]);

    points
        .delete_vector_name(DeleteVectorNameRequest {
            collection_name: name.clone(),
            wait: Some(true),
            vector_name: "b".to_owned(),
            ..Default::default()
        })
        .await
        .expect("delete vector name");
    let status = points
        .search(
            SearchPointsBuilder::new(&name, vec![0.0, 0.0, 1.0], 5)
                .vector_name("b")
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains('b'), "{}", status.message());
    assert_eq!(
        target.count(&name, None).await,
        2,
        "points keep their other vectors"
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[tokio::test]
async fn payload_and_vector_selectors_pick_fields_and_names() {
    let target = Target::new().await;
    let name = target
        .create(
            "selectors",
            CreateCollectionBuilder::new("").vectors_config({
                let mut config = VectorsConfigBuilder::default();
                config.add_named_vector_params("a", VectorParamsBuilder::new(2, Distance::Dot));
                config.add_named_vector_params("b", VectorParamsBuilder::new(2, Distance::Dot));
                config
            }),
        )
        .await;
    target
        .upsert(
            &name,
            vec![PointStruct::new(
                1,
                NamedVectors::default()
                    .add_vector("a", vec![1.0, 0.0])
                    .add_vector("b", vec![0.0, 1.0]),
                payload(json!({"keep": 1, "drop": 2, "nested": {"x": 1, "y": 2}})),
            )],
        )
        .await;
    let include = |fields: &[&str]| WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Include(
            PayloadIncludeSelector {
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            },
        )),
    };
    let exclude = |fields: &[&str]| WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Exclude(
            qdrant_client::qdrant::PayloadExcludeSelector {
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            },
        )),
    };
    let only_b = WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Include(
            qdrant_client::qdrant::VectorsSelector {
                names: vec!["b".to_owned()],
            },
        )),
    };
    let query = |with_payload: WithPayloadSelector| QueryPoints {
        collection_name: name.clone(),
        query: Some(qdrant_client::qdrant::Query {
            variant: Some(query::Variant::Nearest(VectorInput::from(vec![1.0, 0.0]))),
        }),
        using: Some("a".to_owned()),
        with_payload: Some(with_payload),
        with_vectors: Some(only_b.clone()),
        ..Default::default()
    };
    let mut points = target.points();
    let hit = points
        .query(query(include(&["keep", "nested.y"])))
        .await
        .expect("include")
        .into_inner()
        .result
        .remove(0);
    assert_eq!(
        payload_json(hit.payload),
        json!({"keep": 1, "nested": {"y": 2}})
    );
    let Some(VectorsOptions::Vectors(named)) = hit.vectors.and_then(|v| v.vectors_options) else {
        panic!("named vectors expected");
    };
    assert_eq!(named.vectors.keys().collect::<Vec<_>>(), ["b"]);

    let hit = points
        .query(query(exclude(&["drop", "nested.x"])))
        .await
        .expect("exclude")
        .into_inner()
        .result
        .remove(0);
    assert_eq!(
        payload_json(hit.payload),
        json!({"keep": 1, "nested": {"y": 2}})
    );

    let status = points.query(query(include(&["a..b"]))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("a..b"), "{}", status.message());
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Sparse and multi-vectors

#[tokio::test]
async fn sparse_and_multi_vectors_serve_search_query_and_recommend() {
    use qdrant_client::qdrant::{
        MultiVectorComparator, MultiVectorConfig, SparseIndices, SparseVectorParamsBuilder,
        SparseVectorsConfigBuilder,
    };

    let target = Target::new().await;
    let name = target
        .create(
            "sparse_multi",
            CreateCollectionBuilder::new("")
                .vectors_config({
                    let mut config = VectorsConfigBuilder::default();
                    config.add_named_vector_params(
                        "m",
                        VectorParamsBuilder::new(2, Distance::Dot).multivector_config(
                            MultiVectorConfig {
                                comparator: MultiVectorComparator::MaxSim as i32,
                            },
                        ),
                    );
                    config
                })
                .sparse_vectors_config({
                    let mut config = SparseVectorsConfigBuilder::default();
                    config.add_named_vector_params("s", SparseVectorParamsBuilder::default());
                    config
                }),
        )
        .await;
    let point = |id: u64, sparse: Vec<(u32, f32)>, multi: Vec<Vec<f32>>| {
        PointStruct::new(
            id,
            NamedVectors::default()
                .add_vector("s", Vector::from(sparse))
                .add_vector("m", Vector::from(multi)),
            Payload::new(),
        )
    };
    target
        .upsert(
            &name,
            vec![
                point(1, vec![(1, 1.0)], vec![vec![1.0, 0.0], vec![0.0, 1.0]]),
                point(2, vec![(1, 0.5), (2, 0.5)], vec![vec![1.0, 0.0]]),
                point(3, vec![(2, 1.0)], vec![vec![0.0, 1.0]]),
            ],
        )
        .await;
    let mut points = target.points();

    // Sparse search: only points sharing an index score.
    let hits = points
        .search(
            SearchPointsBuilder::new(&name, vec![1.0], 5)
                .vector_name("s")
                .sparse_indices(SparseIndices { data: vec![1] })
                .build(),
        )
        .await
        .expect("sparse search")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [1, 2]);
    assert_eq!(hits[1].score, 0.5);

    // Multi-vector query, MaxSim: Σ over query rows of the best dot product.
    let mut request = query_points(
        &name,
        query::Variant::Nearest(VectorInput::from(vec![vec![1.0, 0.0], vec![0.0, 0.5]])),
        5,
    );
    request.using = Some("m".to_owned());
    let hits = points
        .query(request)
        .await
        .expect("multi query")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [1, 2, 3]);
    assert_eq!(hits[0].score, 1.5);

    // Legacy recommend on the sparse vector: the example's sparse vector, itself excluded.
    let mut request = recommend(&name, &[1], &[], 5);
    request.using = Some("s".to_owned());
    let hits = points
        .recommend(request)
        .await
        .expect("sparse recommend")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2]);

    // Query recommend on the multi-vector by ids.
    let mut request = query_points(
        &name,
        query::Variant::Recommend(RecommendInput {
            positive: vec![id_input(1)],
            negative: vec![id_input(3)],
            strategy: Some(RecommendStrategy::BestScore as i32),
        }),
        5,
    );
    request.using = Some("m".to_owned());
    let hits = points
        .query(request)
        .await
        .expect("multi recommend")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [2]);
    assert!(hits[0].score > 0.0);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Filters and missing points

#[tokio::test]
async fn empty_conditions_are_ignored_and_empty_field_conditions_refused() {
    let target = Target::new().await;
    let name = seed_compass(&target, "bad_filter").await;
    let mut points = target.points();

    // A condition without a variant counts as absent, as Qdrant drops it.
    let filter = Filter {
        must: vec![Condition {
            condition_one_of: None,
        }],
        ..Default::default()
    };
    assert_eq!(target.count(&name, Some(filter)).await, 10);

    let filter = Filter::must([Condition {
        condition_one_of: Some(qdrant_client::qdrant::condition::ConditionOneOf::Field(
            qdrant_client::qdrant::FieldCondition {
                key: "color".to_owned(),
                ..Default::default()
            },
        )),
    }]);
    let status = points
        .count(CountPointsBuilder::new(&name).filter(filter).build())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("At least one field condition must be specified"),
        "{}",
        status.message()
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn updates_of_a_missing_point_are_not_found() {
    let target = Target::new().await;
    let name = seed_compass(&target, "missing_point").await;
    let mut points = target.points();

    let status = points
        .update_vectors(
            qdrant_client::qdrant::UpdatePointVectorsBuilder::new(
                &name,
                vec![qdrant_client::qdrant::PointVectors {
                    id: Some(pid(42)),
                    vectors: Some(unit(0.0).into()),
                }],
            )
            .wait(true)
            .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Not found: No point with id 42 found");

    // Reading a missing point is no error: it is just not there.
    let found = points
        .get(GetPointsBuilder::new(&name, vec![pid(42), pid(1)]).build())
        .await
        .expect("get")
        .into_inner()
        .result;
    assert_eq!(record_ids(&found), [1]);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Payload indexes of every type

#[tokio::test]
async fn every_payload_index_type_is_reported_and_serves_its_filters_facets_and_order() {
    use qdrant_client::qdrant::{
        DatetimeRange, FacetCounts, GeoPoint, GeoRadius, OrderBy, ScrollPoints, facet_value,
    };

    let target = Target::new().await;
    let name = target.create_plain("all_indexes", 2, Distance::Dot).await;
    let rows = [
        (
            1,
            "a",
            10,
            1.5,
            true,
            (52.52, 13.40),
            "2024-01-01T00:00:00Z",
            "the quick brown fox",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ),
        (
            2,
            "b",
            20,
            2.5,
            false,
            (48.85, 2.35),
            "2024-06-01T00:00:00Z",
            "lazy dogs sleep",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        ),
        (
            3,
            "a",
            30,
            0.5,
            true,
            (40.71, -74.0),
            "2023-01-01T00:00:00Z",
            "quick thinking",
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        ),
        (
            4,
            "c",
            40,
            3.5,
            false,
            (52.40, 13.06),
            "2025-01-01T00:00:00Z",
            "brown bears",
            "9f8c2a6e-1b3d-4e5f-8a7b-6c5d4e3f2a1b",
        ),
    ];
    let points_in = rows
        .iter()
        .map(|(id, kw, n, f, b, (lat, lon), ts, body, u)| {
            PointStruct::new(
                *id,
                vec![1.0, 0.0],
                payload(json!({
                    "kw": kw, "n": n, "f": f, "b": b, "loc": {"lat": lat, "lon": lon},
                    "ts": ts, "body": body, "u": u,
                })),
            )
        })
        .collect();
    target.upsert(&name, points_in).await;
    let mut points = target.points();
    let fields = [
        ("kw", FieldType::Keyword, PayloadSchemaType::Keyword),
        ("n", FieldType::Integer, PayloadSchemaType::Integer),
        ("f", FieldType::Float, PayloadSchemaType::Float),
        ("b", FieldType::Bool, PayloadSchemaType::Bool),
        ("loc", FieldType::Geo, PayloadSchemaType::Geo),
        ("ts", FieldType::Datetime, PayloadSchemaType::Datetime),
        ("body", FieldType::Text, PayloadSchemaType::Text),
        ("u", FieldType::Uuid, PayloadSchemaType::Uuid),
    ];
    for (field, field_type, _) in fields {
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
        .expect("collection info")
        .into_inner()
        .result
        .expect("info");
    for (field, _, schema) in fields {
        assert_eq!(
            info.payload_schema[field].data_type, schema as i32,
            "{field}"
        );
        assert_eq!(info.payload_schema[field].points, Some(4), "{field}");
    }

    let berlin = GeoPoint {
        lat: 52.52,
        lon: 13.40,
    };
    let timestamp = |seconds: i64| prost_types::Timestamp { seconds, nanos: 0 };
    let cases = [
        (Condition::matches("kw", "a".to_string()), vec![1, 3]),
        (
            Condition::range("n", range(None, Some(20.0), Some(40.0), None)),
            vec![2, 3],
        ),
        (
            Condition::range("f", range(Some(1.0), None, None, Some(2.5))),
            vec![1, 2],
        ),
        (Condition::matches("b", true), vec![1, 3]),
        (
            Condition::geo_radius(
                "loc",
                GeoRadius {
                    center: Some(berlin),
                    radius: 50_000.0,
                },
            ),
            vec![1, 4],
        ),
        (
            Condition::datetime_range(
                "ts",
                DatetimeRange {
                    gte: Some(timestamp(1_704_067_200)), // 2024-01-01
                    ..Default::default()
                },
            ),
            vec![1, 2, 4],
        ),
        (Condition::matches_text("body", "quick"), vec![1, 3]),
        (
            Condition::matches("u", "1b4e28ba-2fa1-11d2-883f-0016d3cca427".to_string()),
            vec![1],
        ),
    ];
    for (condition, expected) in cases {
        let filter = Filter::must([condition.clone()]);
        let found = points
            .scroll(
                ScrollPointsBuilder::new(&name)
                    .filter(filter.clone())
                    .build(),
            )
            .await
            .expect("filtered scroll")
            .into_inner()
            .result;
        assert_eq!(record_ids(&found), expected, "{condition:?}");
        assert_eq!(
            target.count(&name, Some(filter)).await,
            expected.len() as u64
        );
    }

    // Facets count the values of keyword, integer and bool indexes.
    let facet = |key: &str| FacetCounts {
        collection_name: name.clone(),
        key: key.to_owned(),
        exact: Some(true),
        ..Default::default()
    };
    let hits = points
        .facet(facet("kw"))
        .await
        .expect("keyword facet")
        .into_inner()
        .hits;
    let counts: HashMap<String, u64> = hits
        .iter()
        .map(
            |hit| match hit.value.as_ref().and_then(|v| v.variant.clone()) {
                Some(facet_value::Variant::StringValue(text)) => (text, hit.count),
                other => panic!("a keyword value expected, got {other:?}"),
            },
        )
        .collect();
    assert_eq!(
        counts,
        HashMap::from([("a".into(), 2), ("b".into(), 1), ("c".into(), 1)])
    );
    assert_eq!(hits[0].count, 2, "most frequent first");
    let hits = points
        .facet(facet("b"))
        .await
        .expect("bool facet")
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|hit| hit.count == 2));
    let status = points.facet(facet("body")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("No appropriate index for faceting: `body`"),
        "{}",
        status.message()
    );

    // Ordering by integer, float and datetime indexes; refused without a range index.
    let scroll = |key: &str, direction: qdrant_client::qdrant::Direction| ScrollPoints {
        collection_name: name.clone(),
        order_by: Some(OrderBy {
            key: key.to_owned(),
            direction: Some(direction as i32),
            start_from: None,
        }),
        limit: Some(10),
        ..Default::default()
    };
    use qdrant_client::qdrant::Direction::{Asc, Desc};
    for (key, direction, expected) in [
        ("n", Desc, [4, 3, 2, 1]),
        ("f", Asc, [3, 1, 2, 4]),
        ("ts", Asc, [3, 1, 2, 4]),
    ] {
        let found = points
            .scroll(scroll(key, direction))
            .await
            .expect("ordered scroll")
            .into_inner()
            .result;
        assert_eq!(record_ids(&found), expected, "order by {key}");
    }
    let status = points.scroll(scroll("kw", Asc)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("No range index for `order_by` key: `kw`"),
        "{}",
        status.message()
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// wait

#[tokio::test]
async fn writes_report_completed_only_when_the_caller_waits() {
    use qdrant_client::qdrant::UpdateStatus;

    let target = Target::new().await;
    let name = target.create_plain("wait", 2, Distance::Dot).await;
    let mut points = target.points();
    for (wait, expected) in [
        (Some(true), UpdateStatus::Completed),
        (Some(false), UpdateStatus::Acknowledged),
        (None, UpdateStatus::Acknowledged),
    ] {
        let mut request = UpsertPointsBuilder::new(
            &name,
            vec![PointStruct::new(1, vec![1.0, 0.0], Payload::new())],
        )
        .build();
        request.wait = wait;
        let result = points
            .upsert(request)
            .await
            .expect("upsert")
            .into_inner()
            .result
            .expect("update result");
        assert_eq!(result.status, expected as i32, "wait = {wait:?}");
    }
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Order-by and sample queries

#[tokio::test]
async fn order_by_and_sample_queries_follow_payload_order_and_cover_the_collection() {
    use qdrant_client::qdrant::{Direction, OrderBy, Sample, StartFrom, start_from};

    let target = Target::new().await;
    let name = seed_compass(&target, "order_sample").await;
    let mut points = target.points();
    points
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "angle", FieldType::Integer)
                .wait(true)
                .build(),
        )
        .await
        .expect("integer index");

    let order = |direction: Direction, start: Option<i64>| {
        query::Variant::OrderBy(OrderBy {
            key: "angle".to_owned(),
            direction: Some(direction as i32),
            start_from: start.map(|value| StartFrom {
                value: Some(start_from::Value::Integer(value)),
            }),
        })
    };
    let hits = points
        .query(query_points(&name, order(Direction::Desc, None), 3))
        .await
        .expect("order by desc")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [10, 9, 8]);
    let hits = points
        .query(query_points(&name, order(Direction::Asc, Some(90)), 3))
        .await
        .expect("order by from 90")
        .into_inner()
        .result;
    assert_eq!(num_ids(&hits), [5, 6, 7]);
    // Order-by results carry the value they were ordered by.
    let value = hits[0].order_value.and_then(|v| v.variant);
    assert_eq!(
        value,
        Some(qdrant_client::qdrant::order_value::Variant::Int(90))
    );

    let mut request = query_points(&name, order(Direction::Asc, None), 3);
    request.score_threshold = Some(0.5);
    let status = points.query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bad request: Can't use score_threshold with an order_by query."
    );

    // A random sample: any 4 distinct points; the offset is ignored.
    let mut request = query_points(&name, query::Variant::Sample(Sample::Random as i32), 4);
    request.offset = Some(100);
    let hits = points
        .query(request)
        .await
        .expect("sample")
        .into_inner()
        .result;
    let ids: BTreeSet<u64> = num_ids(&hits).into_iter().collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| (1..=10).contains(id)));
    target.drop_collection(&name).await;
}
