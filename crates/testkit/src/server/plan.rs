//! The collection-level half of Qdrant's read path, which the engine leaves to its caller:
//! requests that name points instead of vectors.
//!
//! Query (with its prefetches), recommend and discover requests may give a point id wherever a
//! vector goes. Qdrant (`lib/collection/src/common/fetch_vectors.rs`,
//! `operations/universal_query/collection_query.rs`, `recommendations.rs`, `discovery.rs`)
//! first retrieves those points' vectors, from the searched collection or from the one
//! `lookup_from` names, then runs the request with the vectors in place and the referenced
//! points of the searched collection excluded from the results. This module does the same: a
//! request becomes a [`Plan`]; [`Resolver::build`] fetches what the plans reference and turns
//! them into the engine's [`QueryRequest`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use qdrant_client::qdrant as pb;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, ContextPair, ContextQuery, DecayKind, DiscoverQuery, EdgeConfig, Expression,
    FeedbackItem, FeedbackNaiveQuery, Filter, Formula, HasIdCondition, Mmr, NaiveFeedbackStrategy,
    NamedQuery, OperationError, PointId, Prefetch, QueryEnum, QueryRequest, RecommendQuery,
    RetrieveRequest, Sample, ScoringQuery, SearchParams, VectorInternal, VectorRef,
    WithPayloadInterface, WithVector, avg_vector_for_recommendation,
};

use super::convert::{check_query_vector, json_from_pb, point_id, vector_from_pb};
use super::filter::{condition_from_pb, filter_opt, geo_point};
use super::validate::Validation;
use crate::storage::{Collection, Storage, StorageError};

/// Qdrant's default `limit` of query and prefetch.
pub(crate) const DEFAULT_LIMIT: usize = 10;
/// Qdrant's default `group_size` of query groups.
pub(crate) const DEFAULT_GROUP_SIZE: usize = 3;
/// Qdrant's default `k` of reciprocal rank fusion.
const DEFAULT_RRF_K: usize = 2;
/// Qdrant's default MMR lambda (`1 - diversity`).
const DEFAULT_MMR_LAMBDA: f32 = 0.5;
/// Qdrant's largest `candidates_limit` of MMR.
const MAX_MMR_CANDIDATES: u32 = 16_384;

// ---------------------------------------------------------------------------------------------
// Plans

/// A vector as a request gives it: the vector itself, or the id of a point that has it.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    Id(PointId),
    Vector(VectorInternal),
}

impl Input {
    fn id(&self) -> Option<PointId> {
        match self {
            Self::Id(id) => Some(*id),
            Self::Vector(_) => None,
        }
    }
}

/// How recommend combines its examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    AverageVector,
    BestScore,
    SumScores,
}

impl Strategy {
    /// An unknown value falls back to the default, as Qdrant's query conversion does.
    fn from_pb(strategy: Option<i32>) -> Self {
        match strategy.map(pb::RecommendStrategy::try_from) {
            Some(Ok(pb::RecommendStrategy::BestScore)) => Self::BestScore,
            Some(Ok(pb::RecommendStrategy::SumScores)) => Self::SumScores,
            _ => Self::AverageVector,
        }
    }

    /// The legacy recommend API rejects unknown values.
    fn from_pb_strict(strategy: Option<i32>) -> Result<Self, StorageError> {
        match strategy.map(pb::RecommendStrategy::try_from) {
            None => Ok(Self::AverageVector),
            Some(Ok(_)) => Ok(Self::from_pb(strategy)),
            Some(Err(_)) => Err(StorageError::invalid_argument(format!(
                "Unknown recommend strategy: {}",
                strategy.unwrap_or_default()
            ))),
        }
    }
}

/// A query scored against vectors, with its inputs still unresolved.
#[derive(Debug, Clone)]
enum VectorQuery {
    Nearest(Input),
    NearestWithMmr {
        nearest: Input,
        diversity: Option<f32>,
        candidates_limit: Option<usize>,
    },
    Recommend {
        positive: Vec<Input>,
        negative: Vec<Input>,
        strategy: Strategy,
    },
    Discover {
        target: Input,
        pairs: Vec<(Input, Input)>,
    },
    Context(Vec<(Input, Input)>),
    Feedback {
        target: Input,
        feedback: Vec<(Input, f32)>,
        coefficients: [f32; 3],
    },
}

impl VectorQuery {
    fn inputs(&self) -> Vec<&Input> {
        match self {
            Self::Nearest(input) | Self::NearestWithMmr { nearest: input, .. } => vec![input],
            Self::Recommend {
                positive, negative, ..
            } => positive.iter().chain(negative).collect(),
            Self::Discover { target, pairs } => std::iter::once(target)
                .chain(pairs.iter().flat_map(|(p, n)| [p, n]))
                .collect(),
            Self::Context(pairs) => pairs.iter().flat_map(|(p, n)| [p, n]).collect(),
            Self::Feedback {
                target, feedback, ..
            } => std::iter::once(target)
                .chain(feedback.iter().map(|(input, _)| input))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum StageQuery {
    Vector(VectorQuery),
    /// Fusion, order by, formula or sample: nothing to resolve.
    Other(Box<ScoringQuery>),
}

/// Where the point ids of a stage are looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Source {
    /// `None`: the searched collection.
    collection: Option<String>,
    vector: String,
}

/// A query or one of its prefetches.
#[derive(Debug, Clone)]
struct Stage {
    prefetches: Vec<Stage>,
    query: Option<StageQuery>,
    using: String,
    lookup_from: Option<pb::LookupLocation>,
    filter: Option<Filter>,
    score_threshold: Option<f32>,
    limit: usize,
    params: Option<SearchParams>,
}

impl Stage {
    fn source(&self, searched: &str) -> Source {
        source(self.lookup_from.as_ref(), &self.using, searched)
    }

    fn inputs(&self) -> Vec<&Input> {
        match &self.query {
            Some(StageQuery::Vector(query)) => query.inputs(),
            _ => Vec::new(),
        }
    }

    /// Qdrant's `CollectionQueryRequest::validation`, for the root and each prefetch.
    fn validate(&self) -> Result<(), StorageError> {
        if !self.prefetches.is_empty() && self.query.is_none() {
            return Err(bad_request(
                "A query is needed to merge the prefetches. Can't have prefetches without defining a query.",
            ));
        }
        if self.score_threshold.is_some() {
            match &self.query {
                Some(StageQuery::Other(query)) if matches!(**query, ScoringQuery::OrderBy(_)) => {
                    return Err(bad_request(
                        "Can't use score_threshold with an order_by query.",
                    ));
                }
                None => {
                    return Err(bad_request(
                        "A query is needed to use the score_threshold. Can't have score_threshold without defining a query.",
                    ));
                }
                _ => {}
            }
        }
        if let Some(StageQuery::Other(query)) = &self.query
            && matches!(**query, ScoringQuery::Fusion(_))
            && !self.using.is_empty()
        {
            return Err(bad_request(
                "Fusion queries cannot be combined with the 'using' field.",
            ));
        }
        Ok(())
    }
}

fn source(lookup_from: Option<&pb::LookupLocation>, using: &str, searched: &str) -> Source {
    let collection = lookup_from
        .map(|lookup| lookup.collection_name.clone())
        .filter(|name| name != searched);
    let vector = lookup_from
        .and_then(|lookup| lookup.vector_name.clone())
        .unwrap_or_else(|| using.to_owned());
    Source { collection, vector }
}

/// A universal query (`Query`, `QueryBatch`, `QueryGroups`).
#[derive(Debug, Clone)]
pub(crate) struct QueryPlan {
    root: Stage,
    offset: usize,
    with_payload: WithPayloadInterface,
    with_vector: WithVector,
}

/// A legacy `Recommend` request.
#[derive(Debug, Clone)]
pub(crate) struct RecommendPlan {
    positive: Vec<Input>,
    negative: Vec<Input>,
    strategy: Strategy,
    using: String,
    lookup_from: Option<pb::LookupLocation>,
    filter: Option<Filter>,
    params: Option<SearchParams>,
    score_threshold: Option<f32>,
    limit: usize,
    offset: usize,
    with_payload: WithPayloadInterface,
    with_vector: WithVector,
}

/// A legacy `Discover` request (a context search when it has no target).
#[derive(Debug, Clone)]
pub(crate) struct DiscoverPlan {
    target: Option<Input>,
    pairs: Vec<(Input, Input)>,
    using: String,
    lookup_from: Option<pb::LookupLocation>,
    filter: Option<Filter>,
    params: Option<SearchParams>,
    limit: usize,
    offset: usize,
    with_payload: WithPayloadInterface,
    with_vector: WithVector,
}

/// A read request whose point references still need resolving.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    Query(QueryPlan),
    Recommend(RecommendPlan),
    Discover(DiscoverPlan),
}

impl Plan {
    /// The collections named by `lookup_from`.
    fn lookup_collections(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Self::Query(plan) => stage_lookups(&plan.root, &mut out),
            Self::Recommend(RecommendPlan { lookup_from, .. })
            | Self::Discover(DiscoverPlan { lookup_from, .. }) => {
                out.extend(lookup_from.iter().map(|l| l.collection_name.clone()));
            }
        }
        out
    }

    /// Every (source, id) the plan references.
    fn references(&self, searched: &str, out: &mut HashMap<Source, HashSet<PointId>>) {
        let (source, ids): (Source, Vec<PointId>) = match self {
            Self::Query(plan) => return stage_refs(&plan.root, searched, out),
            Self::Recommend(plan) => (
                source(plan.lookup_from.as_ref(), &plan.using, searched),
                plan.positive
                    .iter()
                    .chain(&plan.negative)
                    .filter_map(Input::id)
                    .collect(),
            ),
            Self::Discover(plan) => (
                source(plan.lookup_from.as_ref(), &plan.using, searched),
                plan.target
                    .iter()
                    .chain(plan.pairs.iter().flat_map(|(p, n)| [p, n]))
                    .filter_map(Input::id)
                    .collect(),
            ),
        };
        if !ids.is_empty() {
            out.entry(source).or_default().extend(ids);
        }
    }
}

fn stage_lookups(stage: &Stage, out: &mut Vec<String>) {
    if let Some(lookup) = &stage.lookup_from {
        out.push(lookup.collection_name.clone());
    }
    for prefetch in &stage.prefetches {
        stage_lookups(prefetch, out);
    }
}

fn stage_refs(stage: &Stage, searched: &str, out: &mut HashMap<Source, HashSet<PointId>>) {
    let ids: Vec<PointId> = stage.inputs().into_iter().filter_map(Input::id).collect();
    if !ids.is_empty() {
        out.entry(stage.source(searched)).or_default().extend(ids);
    }
    for prefetch in &stage.prefetches {
        stage_refs(prefetch, searched, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Protobuf → plans

pub(crate) struct QueryParts {
    pub(crate) prefetch: Vec<pb::PrefetchQuery>,
    pub(crate) query: Option<pb::Query>,
    pub(crate) using: Option<String>,
    pub(crate) filter: Option<pb::Filter>,
    pub(crate) params: Option<SearchParams>,
    pub(crate) score_threshold: Option<f32>,
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    pub(crate) with_payload: WithPayloadInterface,
    pub(crate) with_vector: WithVector,
    pub(crate) lookup_from: Option<pb::LookupLocation>,
}

impl QueryPlan {
    pub(crate) fn new(parts: QueryParts) -> Result<Self, StorageError> {
        let root = Stage {
            prefetches: parts
                .prefetch
                .into_iter()
                .map(prefetch_stage)
                .collect::<Result<_, _>>()?,
            query: parts.query.map(stage_query).transpose()?,
            using: parts.using.unwrap_or_default(),
            lookup_from: lookup(parts.lookup_from)?,
            filter: filter_opt(parts.filter)?,
            score_threshold: parts.score_threshold,
            limit: parts.limit,
            params: parts.params,
        };
        Ok(Self {
            root,
            offset: parts.offset,
            with_payload: parts.with_payload,
            with_vector: parts.with_vector,
        })
    }
}

fn prefetch_stage(prefetch: pb::PrefetchQuery) -> Result<Stage, StorageError> {
    Ok(Stage {
        prefetches: prefetch
            .prefetch
            .into_iter()
            .map(prefetch_stage)
            .collect::<Result<_, _>>()?,
        query: prefetch.query.map(stage_query).transpose()?,
        using: prefetch.using.unwrap_or_default(),
        lookup_from: lookup(prefetch.lookup_from)?,
        filter: filter_opt(prefetch.filter)?,
        score_threshold: prefetch.score_threshold,
        limit: prefetch.limit.map_or(DEFAULT_LIMIT, |l| l as usize),
        params: super::points::search_params(prefetch.params)?,
    })
}

fn lookup(lookup: Option<pb::LookupLocation>) -> Result<Option<pb::LookupLocation>, StorageError> {
    if let Some(selector) = lookup.as_ref().and_then(|l| l.shard_key_selector.as_ref())
        && !selector.shard_keys.is_empty()
    {
        return Err(StorageError::bad_input(
            "Shard key selection is not supported: qdrant-tower-testkit collections use automatic sharding",
        ));
    }
    Ok(lookup)
}

fn stage_query(query: pb::Query) -> Result<StageQuery, StorageError> {
    use pb::query::Variant as Q;
    let variant = query
        .variant
        .ok_or_else(|| StorageError::invalid_argument("Query variant is missing"))?;
    let other = |query: ScoringQuery| Ok(StageQuery::Other(Box::new(query)));
    let vector = |query: VectorQuery| Ok(StageQuery::Vector(query));
    match variant {
        Q::Nearest(input) => vector(VectorQuery::Nearest(input_from_pb(input)?)),
        Q::Recommend(recommend) => vector(VectorQuery::Recommend {
            positive: inputs(recommend.positive)?,
            negative: inputs(recommend.negative)?,
            strategy: Strategy::from_pb(recommend.strategy),
        }),
        Q::Discover(discover) => {
            let target = discover
                .target
                .ok_or_else(|| StorageError::invalid_argument("DiscoverInput target is missing"))
                .and_then(input_from_pb)?;
            let context = discover.context.ok_or_else(|| {
                StorageError::invalid_argument("DiscoverInput context is missing")
            })?;
            vector(VectorQuery::Discover {
                target,
                pairs: context_pairs(context.pairs)?,
            })
        }
        Q::Context(context) => vector(VectorQuery::Context(context_pairs(context.pairs)?)),
        Q::NearestWithMmr(with_mmr) => {
            let nearest = with_mmr
                .nearest
                .ok_or_else(|| StorageError::invalid_argument("nearest vector is missing"))
                .and_then(input_from_pb)?;
            let mmr = with_mmr
                .mmr
                .ok_or_else(|| StorageError::invalid_argument("mmr is missing"))?;
            // Qdrant's `Mmr` rules: diversity in [0, 1], at most 16 384 candidates.
            let mut validation = Validation::new();
            if let Some(diversity) = mmr.diversity
                && !(0.0..=1.0).contains(&diversity)
            {
                validation.fail_with(
                    "mmr.diversity",
                    diversity,
                    "must be from 0.0 to 1.0".to_owned(),
                );
            }
            if let Some(limit) = mmr.candidates_limit
                && limit > MAX_MMR_CANDIDATES
            {
                validation.fail_with(
                    "mmr.candidates_limit",
                    limit,
                    format!("must be {MAX_MMR_CANDIDATES} or smaller"),
                );
            }
            validation.finish()?;
            vector(VectorQuery::NearestWithMmr {
                nearest,
                diversity: mmr.diversity,
                candidates_limit: mmr.candidates_limit.map(|l| l as usize),
            })
        }
        Q::RelevanceFeedback(feedback) => {
            let target = feedback
                .target
                .ok_or_else(|| StorageError::invalid_argument("target is missing"))
                .and_then(input_from_pb)?;
            let items = feedback
                .feedback
                .into_iter()
                .map(|item| {
                    let example = item.example.ok_or_else(|| {
                        StorageError::invalid_argument("feedback example is missing")
                    })?;
                    Ok((input_from_pb(example)?, item.score))
                })
                .collect::<Result<_, StorageError>>()?;
            let strategy = feedback
                .strategy
                .and_then(|s| s.variant)
                .ok_or_else(|| StorageError::invalid_argument("strategy is missing"))?;
            let pb::feedback_strategy::Variant::Naive(naive) = strategy;
            vector(VectorQuery::Feedback {
                target,
                feedback: items,
                coefficients: [naive.a, naive.b, naive.c],
            })
        }
        Q::Fusion(fusion) => other(ScoringQuery::Fusion(match pb::Fusion::try_from(fusion) {
            Ok(pb::Fusion::Rrf) => qdrant_edge::Fusion::Rrf {
                k: DEFAULT_RRF_K,
                weights: None,
            },
            Ok(pb::Fusion::Dbsf) => qdrant_edge::Fusion::Dbsf,
            Err(_) => {
                return Err(StorageError::invalid_argument(format!(
                    "invalid fusion type value {fusion}"
                )));
            }
        })),
        Q::Rrf(rrf) => other(ScoringQuery::Fusion(qdrant_edge::Fusion::Rrf {
            k: {
                Validation::new()
                    .min_opt("rrf.k", rrf.k.map(u64::from), 1)
                    .finish()?;
                rrf.k.map_or(DEFAULT_RRF_K, |k| k as usize)
            },
            weights: (!rrf.weights.is_empty())
                .then(|| rrf.weights.into_iter().map(OrderedFloat).collect()),
        })),
        Q::OrderBy(order) => other(ScoringQuery::OrderBy(super::points::order_by(order)?)),
        Q::Formula(formula) => {
            let formula = formula_from_pb(formula)?;
            other(ScoringQuery::Formula(formula.try_into().map_err(
                |err: OperationError| StorageError::bad_input(err.to_string()),
            )?))
        }
        Q::Sample(_) => other(ScoringQuery::Sample(Sample::Random)),
        Q::Text(_) => Err(super::status::unsupported(
            "Points/Query",
            "text (BM25) queries",
        )),
    }
}

fn inputs(list: Vec<pb::VectorInput>) -> Result<Vec<Input>, StorageError> {
    list.into_iter().map(input_from_pb).collect()
}

fn context_pairs(pairs: Vec<pb::ContextInputPair>) -> Result<Vec<(Input, Input)>, StorageError> {
    pairs
        .into_iter()
        .map(|pair| {
            let positive = pair
                .positive
                .ok_or_else(|| StorageError::invalid_argument("ContextPair positive is missing"))?;
            let negative = pair
                .negative
                .ok_or_else(|| StorageError::invalid_argument("ContextPair negative is missing"))?;
            Ok((input_from_pb(positive)?, input_from_pb(negative)?))
        })
        .collect()
}

/// A query API vector input.
fn input_from_pb(input: pb::VectorInput) -> Result<Input, StorageError> {
    match input.variant {
        Some(pb::vector_input::Variant::Id(id)) => point_id(id).map(Input::Id),
        None => Err(StorageError::invalid_argument(
            "VectorInput variant is missing",
        )),
        Some(_) => super::convert::vector_input_from_pb(input).map(Input::Vector),
    }
}

/// A legacy API example vector (recommend and discover): dense or sparse, not multi-dense.
fn example_vector(vector: pb::Vector) -> Result<Input, StorageError> {
    match vector_from_pb(vector)? {
        qdrant_edge::VectorPersisted::Dense(dense) => {
            Ok(Input::Vector(VectorInternal::Dense(dense)))
        }
        qdrant_edge::VectorPersisted::Sparse(sparse) => {
            Ok(Input::Vector(VectorInternal::Sparse(sparse)))
        }
        qdrant_edge::VectorPersisted::MultiDense(_) => Err(StorageError::invalid_argument(
            "MultiDense vector is not supported in search request",
        )),
    }
}

fn example(example: pb::VectorExample) -> Result<Input, StorageError> {
    match example.example {
        Some(pb::vector_example::Example::Id(id)) => point_id(id).map(Input::Id),
        Some(pb::vector_example::Example::Vector(vector)) => example_vector(vector),
        None => Err(StorageError::invalid_argument(
            "Vector example, which can be id or bare vector, is malformed",
        )),
    }
}

pub(crate) struct RecommendParts {
    pub(crate) positive: Vec<pb::PointId>,
    pub(crate) negative: Vec<pb::PointId>,
    pub(crate) positive_vectors: Vec<pb::Vector>,
    pub(crate) negative_vectors: Vec<pb::Vector>,
    pub(crate) strategy: Option<i32>,
    pub(crate) using: Option<String>,
    pub(crate) lookup_from: Option<pb::LookupLocation>,
    pub(crate) filter: Option<pb::Filter>,
    pub(crate) params: Option<SearchParams>,
    pub(crate) score_threshold: Option<f32>,
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    pub(crate) with_payload: WithPayloadInterface,
    pub(crate) with_vector: WithVector,
}

impl RecommendPlan {
    pub(crate) fn new(parts: RecommendParts) -> Result<Self, StorageError> {
        let mut positive = parts
            .positive
            .into_iter()
            .map(|id| point_id(id).map(Input::Id))
            .collect::<Result<Vec<_>, _>>()?;
        for vector in parts.positive_vectors {
            positive.push(example_vector(vector)?);
        }
        let mut negative = parts
            .negative
            .into_iter()
            .map(|id| point_id(id).map(Input::Id))
            .collect::<Result<Vec<_>, _>>()?;
        for vector in parts.negative_vectors {
            negative.push(example_vector(vector)?);
        }
        Ok(Self {
            positive,
            negative,
            strategy: Strategy::from_pb_strict(parts.strategy)?,
            using: parts.using.unwrap_or_default(),
            lookup_from: lookup(parts.lookup_from)?,
            filter: filter_opt(parts.filter)?,
            params: parts.params,
            score_threshold: parts.score_threshold,
            limit: parts.limit,
            offset: parts.offset,
            with_payload: parts.with_payload,
            with_vector: parts.with_vector,
        })
    }

    /// Qdrant checks the number of examples before it looks anything up.
    fn validate(&self) -> Result<(), StorageError> {
        match self.strategy {
            Strategy::AverageVector if self.positive.is_empty() => Err(bad_request(
                "At least one positive vector ID required with this strategy",
            )),
            Strategy::BestScore | Strategy::SumScores
                if self.positive.is_empty() && self.negative.is_empty() =>
            {
                Err(bad_request(
                    "At least one positive or negative vector ID required with this strategy",
                ))
            }
            _ => Ok(()),
        }
    }
}

pub(crate) struct DiscoverParts {
    pub(crate) target: Option<pb::TargetVector>,
    pub(crate) context: Vec<pb::ContextExamplePair>,
    pub(crate) using: Option<String>,
    pub(crate) lookup_from: Option<pb::LookupLocation>,
    pub(crate) filter: Option<pb::Filter>,
    pub(crate) params: Option<SearchParams>,
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    pub(crate) with_payload: WithPayloadInterface,
    pub(crate) with_vector: WithVector,
}

impl DiscoverPlan {
    pub(crate) fn new(parts: DiscoverParts) -> Result<Self, StorageError> {
        let target = parts
            .target
            .map(|target| match target.target {
                Some(pb::target_vector::Target::Single(single)) => example(single),
                None => Err(StorageError::invalid_argument("Target vector is malformed")),
            })
            .transpose()?;
        let pairs = parts
            .context
            .into_iter()
            .map(|pair| match (pair.positive, pair.negative) {
                (Some(positive), Some(negative)) => Ok((example(positive)?, example(negative)?)),
                _ => Err(StorageError::invalid_argument(
                    "Both positive and negative are required in a context pair",
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            target,
            pairs,
            using: parts.using.unwrap_or_default(),
            lookup_from: lookup(parts.lookup_from)?,
            filter: filter_opt(parts.filter)?,
            params: parts.params,
            limit: parts.limit,
            offset: parts.offset,
            with_payload: parts.with_payload,
            with_vector: parts.with_vector,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Formulas

fn formula_from_pb(formula: pb::Formula) -> Result<Formula, StorageError> {
    let expression = formula
        .expression
        .ok_or_else(|| StorageError::invalid_argument("missing field: expression"))?;
    Ok(Formula {
        formula: expression_from_pb(expression)?,
        defaults: formula
            .defaults
            .into_iter()
            .map(|(key, value)| (key, json_from_pb(value)))
            .collect(),
    })
}

fn expression_from_pb(expression: pb::Expression) -> Result<Expression, StorageError> {
    use pb::expression::Variant as V;
    let missing = |field: &str| StorageError::invalid_argument(format!("missing field: {field}"));
    let boxed = |expression: pb::Expression| expression_from_pb(expression).map(Box::new);
    let list = |list: Vec<pb::Expression>| {
        list.into_iter()
            .map(expression_from_pb)
            .collect::<Result<Vec<_>, _>>()
    };
    let key = |key: &str| {
        key.parse()
            .map_err(|_| StorageError::invalid_argument("invalid payload key"))
    };
    let variant = expression.variant.ok_or_else(|| missing("variant"))?;
    Ok(match variant {
        V::Constant(constant) => Expression::Constant(constant),
        V::Variable(variable) => Expression::Variable(variable),
        V::Condition(condition) => {
            if condition.condition_one_of.is_none() {
                return Err(missing("condition"));
            }
            Expression::Condition(Box::new(condition_from_pb(condition)?))
        }
        V::GeoDistance(geo) => Expression::GeoDistance {
            origin: geo_point(Some(geo.origin.ok_or_else(|| missing("origin"))?))?,
            to: key(&geo.to)?,
        },
        V::Datetime(datetime) => Expression::Datetime(datetime),
        V::DatetimeKey(datetime_key) => Expression::DatetimeKey(key(&datetime_key)?),
        V::Mult(mult) => Expression::Mult(list(mult.mult)?),
        V::Sum(sum) => Expression::Sum(list(sum.sum)?),
        V::Max(max) => Expression::Max(list(max.max)?),
        V::Min(min) => Expression::Min(list(min.min)?),
        V::Div(div) => Expression::Div {
            left: boxed(*div.left.ok_or_else(|| missing("left"))?)?,
            right: boxed(*div.right.ok_or_else(|| missing("right"))?)?,
            by_zero_default: div.by_zero_default,
        },
        V::Neg(inner) => Expression::Neg(boxed(*inner)?),
        V::Abs(inner) => Expression::Abs(boxed(*inner)?),
        V::Sqrt(inner) => Expression::Sqrt(boxed(*inner)?),
        V::Pow(pow) => Expression::Pow {
            base: boxed(*pow.base.ok_or_else(|| missing("base"))?)?,
            exponent: boxed(*pow.exponent.ok_or_else(|| missing("exponent"))?)?,
        },
        V::Exp(inner) => Expression::Exp(boxed(*inner)?),
        V::Log10(inner) => Expression::Log10(boxed(*inner)?),
        V::Ln(inner) => Expression::Ln(boxed(*inner)?),
        V::Acosh(inner) => Expression::Acosh(boxed(*inner)?),
        V::LinDecay(decay) => decay_from_pb(*decay, DecayKind::Lin)?,
        V::ExpDecay(decay) => decay_from_pb(*decay, DecayKind::Exp)?,
        V::GaussDecay(decay) => decay_from_pb(*decay, DecayKind::Gauss)?,
    })
}

fn decay_from_pb(
    decay: pb::DecayParamsExpression,
    kind: DecayKind,
) -> Result<Expression, StorageError> {
    let x = decay
        .x
        .ok_or_else(|| StorageError::invalid_argument("missing field: x"))?;
    Ok(Expression::Decay {
        kind,
        x: Box::new(expression_from_pb(*x)?),
        target: decay
            .target
            .map(|target| expression_from_pb(*target).map(Box::new))
            .transpose()?,
        midpoint: decay.midpoint,
        scale: decay.scale,
    })
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// The collections a batch of plans reads: the searched one and those `lookup_from` names.
pub(crate) struct Resolver {
    name: String,
    collection: Arc<Collection>,
    lookups: HashMap<String, Arc<Collection>>,
}

/// The vectors of the referenced points, by source; `None` when the point lacks that vector.
type Resolved = HashMap<Source, HashMap<PointId, Option<VectorInternal>>>;

impl Resolver {
    /// Finds the collections the plans name. A missing lookup collection is Qdrant's
    /// "Collection … not found".
    pub(crate) fn new(
        storage: &Storage,
        name: &str,
        collection: Arc<Collection>,
        plans: &[Plan],
    ) -> Result<Self, StorageError> {
        let mut lookups = HashMap::new();
        for lookup in plans.iter().flat_map(Plan::lookup_collections) {
            if lookup == name || lookups.contains_key(&lookup) {
                continue;
            }
            let found = storage
                .get(&lookup)
                .map_err(|_| collection_not_found(&lookup))?;
            lookups.insert(lookup, found);
        }
        Ok(Self {
            name: name.to_owned(),
            collection,
            lookups,
        })
    }

    pub(crate) fn collection(&self) -> &Arc<Collection> {
        &self.collection
    }

    /// Fetches the referenced vectors and builds one engine request per plan (`None` for a
    /// legacy request with `limit` 0, which Qdrant answers with no points). Blocking.
    pub(crate) fn build(
        &self,
        plans: Vec<Plan>,
    ) -> Result<Vec<Option<QueryRequest>>, StorageError> {
        // Qdrant short-cuts a legacy batch whose every limit is 0 before validating it.
        let legacy_limit = |plan: &Plan| match plan {
            Plan::Query(_) => None,
            Plan::Recommend(plan) => Some(plan.limit),
            Plan::Discover(plan) => Some(plan.limit),
        };
        if !plans.is_empty() && plans.iter().all(|plan| legacy_limit(plan) == Some(0)) {
            return Ok(plans.iter().map(|_| None).collect());
        }
        for plan in &plans {
            match plan {
                Plan::Recommend(plan) => plan.validate()?,
                Plan::Discover(plan) if plan.target.is_none() && plan.pairs.is_empty() => {
                    return Err(bad_request("target and/or context_pairs must be specified"));
                }
                _ => {}
            }
        }

        let mut wanted = HashMap::new();
        for plan in &plans {
            plan.references(&self.name, &mut wanted);
        }
        let resolved = self.fetch(wanted)?;

        let config = self.collection.shard().config().clone();
        plans
            .into_iter()
            .map(|plan| {
                if legacy_limit(&plan) == Some(0) {
                    return Ok(None);
                }
                match plan {
                    Plan::Query(plan) => self.query(&config, &resolved, plan).map(Some),
                    Plan::Recommend(plan) => self.recommend(&config, &resolved, plan).map(Some),
                    Plan::Discover(plan) => self.discover(&config, &resolved, plan).map(Some),
                }
            })
            .collect()
    }

    fn fetch(&self, wanted: HashMap<Source, HashSet<PointId>>) -> Result<Resolved, StorageError> {
        let mut resolved = Resolved::new();
        for (source, ids) in wanted {
            let collection = match &source.collection {
                None => &self.collection,
                Some(name) => &self.lookups[name],
            };
            let ids: Vec<PointId> = ids.into_iter().collect();
            let records = collection.shard().retrieve(RetrieveRequest {
                point_ids: ids.clone(),
                with_payload: Some(WithPayloadInterface::Bool(false)),
                with_vector: Some(WithVector::Selector(vec![source.vector.clone()])),
            })?;
            // Every referenced point must exist, as Qdrant checks before anything runs.
            let found: HashMap<PointId, Option<VectorInternal>> = records
                .into_iter()
                .map(|record| {
                    let vector = record
                        .vector
                        .as_ref()
                        .and_then(|v| v.get(&source.vector))
                        .map(VectorRef::to_owned);
                    (record.id, vector)
                })
                .collect();
            if let Some(missing) = ids.iter().find(|id| !found.contains_key(id)) {
                return Err(point_not_found(*missing));
            }
            resolved.insert(source, found);
        }
        Ok(resolved)
    }

    fn query(
        &self,
        config: &EdgeConfig,
        resolved: &Resolved,
        plan: QueryPlan,
    ) -> Result<QueryRequest, StorageError> {
        let QueryPlan {
            root,
            mut offset,
            with_payload,
            with_vector,
        } = plan;
        root.validate()?;
        // Qdrant ignores the offset of a random sample, whose order is not stable.
        if root.prefetches.is_empty()
            && matches!(&root.query, Some(StageQuery::Other(q)) if matches!(**q, ScoringQuery::Sample(_)))
        {
            offset = 0;
        }
        let mut excluded = HashSet::new();
        self.same_collection_ids(&root, &mut excluded);
        let source = root.source(&self.name);
        let query = root
            .query
            .map(|query| stage_scoring(config, resolved, &source, &root.using, root.limit, query))
            .transpose()?;
        let prefetches = root
            .prefetches
            .into_iter()
            .map(|prefetch| self.prefetch(config, resolved, prefetch))
            .collect::<Result<_, _>>()?;
        Ok(QueryRequest {
            prefetches,
            query,
            filter: exclude(excluded, root.filter),
            score_threshold: root.score_threshold,
            limit: root.limit,
            offset,
            params: root.params,
            with_vector,
            with_payload,
        })
    }

    fn prefetch(
        &self,
        config: &EdgeConfig,
        resolved: &Resolved,
        stage: Stage,
    ) -> Result<Prefetch, StorageError> {
        stage.validate()?;
        let source = stage.source(&self.name);
        let query = stage
            .query
            .map(|query| stage_scoring(config, resolved, &source, &stage.using, stage.limit, query))
            .transpose()?;
        Ok(Prefetch {
            prefetches: stage
                .prefetches
                .into_iter()
                .map(|nested| self.prefetch(config, resolved, nested))
                .collect::<Result<_, _>>()?,
            query,
            limit: stage.limit,
            params: stage.params,
            filter: stage.filter,
            score_threshold: stage.score_threshold,
        })
    }

    /// The referenced ids of the searched collection, in a stage and all its prefetches.
    fn same_collection_ids(&self, stage: &Stage, out: &mut HashSet<PointId>) {
        if stage.source(&self.name).collection.is_none() {
            out.extend(stage.inputs().into_iter().filter_map(Input::id));
        }
        for prefetch in &stage.prefetches {
            self.same_collection_ids(prefetch, out);
        }
    }

    fn recommend(
        &self,
        config: &EdgeConfig,
        resolved: &Resolved,
        plan: RecommendPlan,
    ) -> Result<QueryRequest, StorageError> {
        let source = source(plan.lookup_from.as_ref(), &plan.using, &self.name);
        let excluded: HashSet<PointId> = if source.collection.is_none() {
            plan.positive
                .iter()
                .chain(&plan.negative)
                .filter_map(Input::id)
                .collect()
        } else {
            HashSet::new()
        };
        // The legacy API skips examples that lack the vector.
        let vectors = |inputs: Vec<Input>| -> Result<Vec<VectorInternal>, StorageError> {
            let mut out = Vec::new();
            for input in inputs {
                if let Some(vector) = lookup_vector(resolved, &source, input)? {
                    check_query_vector(config, &plan.using, &vector)?;
                    out.push(vector);
                }
            }
            Ok(out)
        };
        let positive = vectors(plan.positive)?;
        let negative = vectors(plan.negative)?;
        let query = recommend_query(&plan.using, positive, negative, plan.strategy)?;
        Ok(QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(query)),
            filter: legacy_filter(excluded, plan.filter),
            score_threshold: plan.score_threshold,
            limit: plan.limit,
            offset: plan.offset,
            params: plan.params,
            with_vector: plan.with_vector,
            with_payload: plan.with_payload,
        })
    }

    fn discover(
        &self,
        config: &EdgeConfig,
        resolved: &Resolved,
        plan: DiscoverPlan,
    ) -> Result<QueryRequest, StorageError> {
        let source = source(plan.lookup_from.as_ref(), &plan.using, &self.name);
        let excluded: HashSet<PointId> = if source.collection.is_none() {
            plan.target
                .iter()
                .chain(plan.pairs.iter().flat_map(|(p, n)| [p, n]))
                .filter_map(Input::id)
                .collect()
        } else {
            HashSet::new()
        };
        let vector = |input: Input| -> Result<VectorInternal, StorageError> {
            let vector = lookup_vector(resolved, &source, input)?
                .ok_or_else(|| vector_not_found(&source.vector))?;
            check_query_vector(config, &plan.using, &vector)?;
            Ok(vector)
        };
        let pairs = plan
            .pairs
            .into_iter()
            .map(|(positive, negative)| {
                Ok(ContextPair {
                    positive: vector(positive)?,
                    negative: vector(negative)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let using = named(&plan.using);
        let query = match plan.target {
            Some(target) => QueryEnum::Discover(NamedQuery {
                query: DiscoverQuery::new(vector(target)?, pairs),
                using,
            }),
            None => QueryEnum::Context(NamedQuery {
                query: ContextQuery::new(pairs),
                using,
            }),
        };
        let filter = if excluded.is_empty() {
            plan.filter
        } else {
            exclude(excluded, plan.filter)
        };
        Ok(QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(query)),
            filter,
            score_threshold: None,
            limit: plan.limit,
            offset: plan.offset,
            params: plan.params,
            with_vector: plan.with_vector,
            with_payload: plan.with_payload,
        })
    }
}

/// The vector of an input: itself, or the looked-up vector of the point it names (`None` when
/// that point has no such vector).
fn lookup_vector(
    resolved: &Resolved,
    source: &Source,
    input: Input,
) -> Result<Option<VectorInternal>, StorageError> {
    match input {
        Input::Vector(mut vector) => {
            vector.preprocess();
            Ok(Some(vector))
        }
        Input::Id(id) => resolved
            .get(source)
            .and_then(|points| points.get(&id))
            .cloned()
            .ok_or_else(|| point_not_found(id)),
    }
}

fn stage_scoring(
    config: &EdgeConfig,
    resolved: &Resolved,
    source: &Source,
    using: &str,
    limit: usize,
    query: StageQuery,
) -> Result<ScoringQuery, StorageError> {
    let query = match query {
        StageQuery::Other(query) => return Ok(*query),
        StageQuery::Vector(query) => query,
    };
    let vector = |input: Input| -> Result<VectorInternal, StorageError> {
        let vector = lookup_vector(resolved, source, input)?
            .ok_or_else(|| vector_not_found(&source.vector))?;
        check_query_vector(config, using, &vector)?;
        Ok(vector)
    };
    let pairs = |pairs: Vec<(Input, Input)>| {
        pairs
            .into_iter()
            .map(|(positive, negative)| {
                Ok(ContextPair {
                    positive: vector(positive)?,
                    negative: vector(negative)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()
    };
    let using_name = named(using);
    let query = match query {
        VectorQuery::Nearest(input) => QueryEnum::Nearest(NamedQuery {
            query: vector(input)?,
            using: using_name,
        }),
        VectorQuery::NearestWithMmr {
            nearest,
            diversity,
            candidates_limit,
        } => {
            return Ok(ScoringQuery::Mmr(Mmr {
                vector: vector(nearest)?,
                using: using.to_owned(),
                lambda: OrderedFloat(diversity.map_or(DEFAULT_MMR_LAMBDA, |d| 1.0 - d)),
                candidates_limit: candidates_limit.unwrap_or(limit),
            }));
        }
        VectorQuery::Recommend {
            positive,
            negative,
            strategy,
        } => {
            let positive = positive.into_iter().map(vector).collect::<Result<_, _>>()?;
            let negative = negative.into_iter().map(vector).collect::<Result<_, _>>()?;
            recommend_query(using, positive, negative, strategy)?
        }
        VectorQuery::Discover { target, pairs: p } => QueryEnum::Discover(NamedQuery {
            query: DiscoverQuery::new(vector(target)?, pairs(p)?),
            using: using_name,
        }),
        VectorQuery::Context(p) => QueryEnum::Context(NamedQuery {
            query: ContextQuery::new(pairs(p)?),
            using: using_name,
        }),
        VectorQuery::Feedback {
            target,
            feedback,
            coefficients: [a, b, c],
        } => {
            let feedback = feedback
                .into_iter()
                .map(|(input, score)| {
                    Ok(FeedbackItem {
                        vector: vector(input)?,
                        score: OrderedFloat(score),
                    })
                })
                .collect::<Result<Vec<_>, StorageError>>()?;
            QueryEnum::FeedbackNaive(NamedQuery {
                query: FeedbackNaiveQuery {
                    target: vector(target)?,
                    feedback,
                    coefficients: NaiveFeedbackStrategy {
                        a: OrderedFloat(a),
                        b: OrderedFloat(b),
                        c: OrderedFloat(c),
                    },
                },
                using: using_name,
            })
        }
    };
    Ok(ScoringQuery::Vector(query))
}

fn recommend_query(
    using: &str,
    positive: Vec<VectorInternal>,
    negative: Vec<VectorInternal>,
    strategy: Strategy,
) -> Result<QueryEnum, StorageError> {
    let using_name = named(using);
    Ok(match strategy {
        Strategy::AverageVector => {
            let vector = avg_vector_for_recommendation(
                positive.iter().map(VectorRef::from),
                negative.iter().map(VectorRef::from).peekable(),
            )
            .map_err(|err| match err {
                OperationError::ValidationError { description } => {
                    StorageError::bad_input(description)
                }
                other => StorageError::from(other),
            })?;
            QueryEnum::Nearest(NamedQuery {
                query: vector,
                using: using_name,
            })
        }
        Strategy::BestScore => QueryEnum::RecommendBestScore(NamedQuery {
            query: RecommendQuery::new(positive, negative),
            using: using_name,
        }),
        Strategy::SumScores => QueryEnum::RecommendSumScores(NamedQuery {
            query: RecommendQuery::new(positive, negative),
            using: using_name,
        }),
    })
}

fn named(using: &str) -> Option<String> {
    (!using.is_empty()).then(|| using.to_owned())
}

/// `must_not: has_id` the excluded ids, merged into the user's filter (query API).
fn exclude(ids: HashSet<PointId>, filter: Option<Filter>) -> Option<Filter> {
    if ids.is_empty() {
        return filter;
    }
    let not_ids = Filter::new_must_not(Condition::HasId(
        ids.into_iter().collect::<HasIdCondition>(),
    ));
    Some(not_ids.merge_owned(filter.unwrap_or_default()))
}

/// The legacy recommend's filter: the user's filter as a nested `must`, the examples excluded.
fn legacy_filter(ids: HashSet<PointId>, filter: Option<Filter>) -> Option<Filter> {
    Some(Filter {
        should: None,
        min_should: None,
        must: filter.map(|filter| vec![Condition::Filter(filter)]),
        must_not: Some(vec![Condition::HasId(
            ids.into_iter().collect::<HasIdCondition>(),
        )]),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors, worded as Qdrant's

fn bad_request(description: &str) -> StorageError {
    // Qdrant's `BadRequest` reads "Bad request: …" and maps to INVALID_ARGUMENT.
    StorageError::invalid_argument(format!("Bad request: {description}"))
}

pub(crate) fn point_not_found(id: PointId) -> StorageError {
    StorageError::NotFound {
        description: format!("No point with id {id} found"),
    }
}

fn vector_not_found(name: &str) -> StorageError {
    StorageError::NotFound {
        description: format!("Vector with name {name:?} for point not found"),
    }
}

/// Qdrant's answer when `lookup_from` or `with_lookup` names a missing collection.
pub(crate) fn collection_not_found(name: &str) -> StorageError {
    StorageError::NotFound {
        description: format!("Collection {name} not found"),
    }
}
