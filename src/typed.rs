//! [`Client`]: typed calls over any `Service<VectorRequest>` — the ready stack, a stack of your
//! own, or a bare [`QdrantService`](crate::QdrantService).

use std::fmt;
use std::time::Duration;

use futures_util::stream::{self, Stream};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use qdrant_tower_client::qdrant::{
    ClearPayloadPoints, CollectionExistsRequest, CollectionOperationResponse, CollectionParams,
    CountPoints, CountResponse, CreateCollection, CreateFieldIndexCollection, DeleteCollection,
    DeletePayloadPoints, DeletePoints, FacetCounts, FacetResponse, GetCollectionInfoRequest,
    GetCollectionInfoResponse, GetPoints, GetResponse, HealthCheckReply, HealthCheckRequest,
    ListCollectionsRequest, ListCollectionsResponse, PointId, PointsOperationResponse,
    QueryBatchPoints, QueryBatchResponse, QueryGroupsResponse, QueryPointGroups, QueryPoints,
    QueryResponse, RetrievedPoint, ScrollPoints, ScrollResponse, SearchBatchPoints,
    SearchBatchResponse, SearchPoints, SearchResponse, SetPayloadPoints, SparseVectorConfig,
    UpdateBatchPoints, UpdateBatchResponse, UpdateCollection, UpsertPoints, VectorsConfig,
    vectors_config,
};
use qdrant_tower_client::{
    ChunkOptions, ChunkedUpsert, Fallback, FallbackSource, Queued, VectorError, VectorOp,
    VectorRequest, VectorResponse,
};
use qdrant_tower_layers::{ErrorKind, RequestInfo};

/// Typed calls to Qdrant over any service that answers [`VectorRequest`]s: each method takes
/// qdrant-client's message (or its builder) and returns qdrant-client's typed response, or a
/// [`VectorError`]. The service's error may be any type that converts into one (a `Buffer`'s
/// `BoxError` does).
///
/// It adds nothing to a call but the type: resilience is the service's. Give it the ready
/// stack ([`QdrantStack::client`](crate::QdrantStack::client)), your own stack, or a bare
/// [`QdrantService`](crate::QdrantService). Cloning is as cheap as cloning the service.
///
/// ```no_run
/// use qdrant_tower::qdrant::{Condition, Filter, SearchPointsBuilder};
/// use qdrant_tower::{Client, QdrantService};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::new(QdrantService::from_url("http://localhost:6334")?);
/// let found = client
///     .search(
///         SearchPointsBuilder::new("docs", vec![0.1, 0.2, 0.3, 0.4], 5)
///             .filter(Filter::must([Condition::matches("lang", "en".to_string())])),
///     )
///     .await?;
/// println!("{} hits", found.result.len());
/// # Ok(()) }
/// ```
///
/// # Deadlines
/// A call carries the deadline of its request ([`VectorRequest::with_timeout`] through
/// [`Client::call`]) or, with [`Client::with_timeout`], `now + timeout` taken when the call
/// starts; otherwise the service's own (the ready stack's deadline layer) applies.
#[derive(Clone)]
pub struct Client<S> {
    service: S,
    timeout: Option<Duration>,
    idempotent_create: bool,
}

impl<S> Client<S> {
    /// A client over `service`.
    pub const fn new(service: S) -> Self {
        Client {
            service,
            timeout: None,
            idempotent_create: false,
        }
    }

    /// The same client, each of whose calls must end within `timeout` of its start (a
    /// per-call deadline; the service's layers and Qdrant are told of it). Calls through the
    /// original client are not affected.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qdrant_tower::{Client, QdrantService};
    /// # use qdrant_tower::qdrant::CountPointsBuilder;
    /// # async fn example(client: Client<QdrantService>) -> Result<(), qdrant_tower::VectorError> {
    /// let quick = client.with_timeout(Duration::from_millis(200));
    /// let counted = quick.count(CountPointsBuilder::new("docs")).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Self
    where
        S: Clone,
    {
        Client {
            service: self.service.clone(),
            timeout: Some(timeout),
            idempotent_create: self.idempotent_create,
        }
    }

    /// The same client, whose [`create_collection`](Self::create_collection) is safe to
    /// retry (`on`) or not (the default); see there.
    pub fn with_idempotent_create(mut self, on: bool) -> Self {
        self.idempotent_create = on;
        self
    }

    /// The service below.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service below, taken out of the client.
    pub fn into_service(self) -> S {
        self.service
    }
}

impl<S> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("idempotent_create", &self.idempotent_create)
            .finish_non_exhaustive()
    }
}

/// One typed method per row: name, message type, `VectorOp` variant (and so the
/// `VectorResponse` variant), response type, what the method returns (`read`: an [`Answer`],
/// which may be a marked fallback; `write`: a [`Written`], which may be queued; `plain`: the
/// response), doc line.
macro_rules! typed_calls {
    ($( $(#[$doc:meta])* $method:ident($message:ty) => $variant:ident -> $response:ty, $mode:ident $(, $unbox:ident)?; )*) => {
        impl<S> Client<S>
        where
            S: Service<VectorRequest, Response = VectorResponse> + Clone,
            S::Error: Into<VectorError>,
        {
            $(
                $(#[$doc])*
                pub async fn $method(
                    &self,
                    request: impl Into<$message>,
                ) -> Result<typed_calls!(@returns $mode $response), VectorError> {
                    let op = VectorOp::$variant(request.into());
                    let response = self.call(VectorRequest::new(op)).await?;
                    typed_calls!(@answer $mode $variant response $($unbox)?)
                }
            )*
        }
    };
    (@returns read $response:ty) => { Answer<$response> };
    (@returns write $response:ty) => { Written<$response> };
    (@returns plain $response:ty) => { $response };
    (@answer read $variant:ident $response:ident $($unbox:ident)?) => {
        match $response {
            VectorResponse::$variant(response) => Ok(Answer { value: typed_calls!(@take response $($unbox)?), fallback: None }),
            VectorResponse::Fallback(fallback) => match *fallback {
                Fallback { response: VectorResponse::$variant(response), source, cause, age, .. } => Ok(Answer {
                    value: typed_calls!(@take response $($unbox)?),
                    fallback: Some(FallbackMark { source, cause, age }),
                }),
                other => Err(mismatched(stringify!($variant), &other.response)),
            },
            other => Err(mismatched(stringify!($variant), &other)),
        }
    };
    (@answer write $variant:ident $response:ident) => {
        match $response {
            VectorResponse::$variant(response) => Ok(Written::Applied(response)),
            VectorResponse::Queued(queued) => Ok(Written::Queued(queued)),
            other => Err(mismatched(stringify!($variant), &other)),
        }
    };
    (@answer plain $variant:ident $response:ident $($unbox:ident)?) => {
        match $response {
            VectorResponse::$variant(response) => Ok(typed_calls!(@take response $($unbox)?)),
            other => Err(mismatched(stringify!($variant), &other)),
        }
    };
    (@take $response:ident) => { $response };
    (@take $response:ident unboxed) => { *$response };
}

typed_calls! {
    /// Nearest-neighbour search (`SearchPointsBuilder`).
    search(SearchPoints) => Search -> SearchResponse, read;
    /// Several searches in one call (`SearchBatchPointsBuilder`).
    search_batch(SearchBatchPoints) => SearchBatch -> SearchBatchResponse, read;
    /// The universal query: nearest, recommend, discover, fusion, order-by… (`QueryPointsBuilder`).
    query(QueryPoints) => Query -> QueryResponse, read;
    /// Several queries in one call (`QueryBatchPointsBuilder`).
    query_batch(QueryBatchPoints) => QueryBatch -> QueryBatchResponse, read;
    /// A query grouped by a payload field (`QueryPointGroupsBuilder`).
    query_groups(QueryPointGroups) => QueryGroups -> QueryGroupsResponse, read;
    /// Insert or replace points (`UpsertPointsBuilder`). For many points, see
    /// [`Client::upsert_chunked`].
    upsert(UpsertPoints) => Upsert -> PointsOperationResponse, write;
    /// Delete points by ids or filter (`DeletePointsBuilder`).
    delete(DeletePoints) => Delete -> PointsOperationResponse, write;
    /// Retrieve points by id (`GetPointsBuilder`).
    get(GetPoints) => Get -> GetResponse, read;
    /// One page of points (`ScrollPointsBuilder`); [`Client::scroll_all`] pages for you.
    scroll(ScrollPoints) => Scroll -> ScrollResponse, read;
    /// Count points, exactly or approximately (`CountPointsBuilder`).
    count(CountPoints) => Count -> CountResponse, read;
    /// Merge payload keys into points (`SetPayloadPointsBuilder`).
    set_payload(SetPayloadPoints) => SetPayload -> PointsOperationResponse, write;
    /// Delete payload keys of points (`DeletePayloadPointsBuilder`).
    delete_payload(DeletePayloadPoints) => DeletePayload -> PointsOperationResponse, write;
    /// Remove the whole payload of points (`ClearPayloadPointsBuilder`).
    clear_payload(ClearPayloadPoints) => ClearPayload -> PointsOperationResponse, write;
    /// Several point operations in one call (`UpdateBatchPointsBuilder`).
    update_batch(UpdateBatchPoints) => UpdateBatch -> UpdateBatchResponse, write;
    /// Count points per value of a payload field (`FacetCountsBuilder`).
    facet(FacetCounts) => Facet -> FacetResponse, read;
    /// Create a payload index (`CreateFieldIndexCollectionBuilder`).
    create_field_index(CreateFieldIndexCollection) => CreateFieldIndex -> PointsOperationResponse, plain;
    /// Change a collection's parameters (`UpdateCollectionBuilder`).
    update_collection(UpdateCollection) => UpdateCollection -> CollectionOperationResponse, plain;
    /// Delete a collection (`DeleteCollectionBuilder`).
    delete_collection(DeleteCollection) => DeleteCollection -> CollectionOperationResponse, plain;
    /// A collection's status, counts, configuration and payload schema
    /// (`GetCollectionInfoRequest`).
    collection_info(GetCollectionInfoRequest) => GetCollection -> GetCollectionInfoResponse, read, unboxed;
    /// Whether a collection (or alias) exists (`CollectionExistsRequest`).
    collection_exists(CollectionExistsRequest) => CollectionExists -> qdrant_tower_client::qdrant::CollectionExistsResponse, read;
    /// Every collection's name (`ListCollectionsRequest`).
    list_collections(ListCollectionsRequest) => ListCollections -> ListCollectionsResponse, read;
    /// Qdrant's health check: title, version, commit (`HealthCheckRequest`).
    health_check(HealthCheckRequest) => HealthCheck -> HealthCheckReply, read;
}

/// A typed read's answer: Qdrant's response (the `Deref` target, so `answer.result` reads
/// as before) and, when the stack answered in place of a failed call, the
/// [fallback marker](FallbackMark).
///
/// ```no_run
/// # use qdrant_tower::Client;
/// # use qdrant_tower::qdrant::SearchPointsBuilder;
/// # async fn example(client: Client<qdrant_tower::StackService>) -> Result<(), qdrant_tower::VectorError> {
/// let hits = client.search(SearchPointsBuilder::new("docs", vec![0.1, 0.2], 5)).await?;
/// if let Some(mark) = hits.fallback() {
///     println!("degraded answer from {} (Qdrant failed: {}), age {:?}", mark.source, mark.cause, mark.age);
/// }
/// println!("{} hits", hits.result.len());
/// let response = hits.into_inner(); // qdrant-client's SearchResponse
/// # drop(response); Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    value: T,
    fallback: Option<FallbackMark>,
}

/// What marks a fallback answer: where it came from, the failure it stands in for, and (for
/// a stale cache entry) its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackMark {
    /// Where the answer came from.
    pub source: FallbackSource,
    /// The kind of error of the call it replaces.
    pub cause: ErrorKind,
    /// How long ago Qdrant gave it (stale answers).
    pub age: Option<Duration>,
}

impl<T> Answer<T> {
    /// Whether this is Qdrant's own, fresh answer.
    pub fn is_fresh(&self) -> bool {
        self.fallback.is_none()
    }

    /// The fallback marker, if the stack answered in place of a failed call.
    pub fn fallback(&self) -> Option<&FallbackMark> {
        self.fallback.as_ref()
    }

    /// The response, unmarked.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Answer<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A typed write's outcome: applied by Qdrant, or accepted into the durable write-behind
/// queue (on disk, applied when Qdrant is back) — never a success it is not.
///
/// ```no_run
/// # use qdrant_tower::{Client, Written};
/// # use qdrant_tower::qdrant::{PointStruct, UpsertPointsBuilder};
/// # async fn example(client: Client<qdrant_tower::StackService>) -> Result<(), qdrant_tower::VectorError> {
/// let point = PointStruct::new(7, vec![0.1, 0.2], [("n", 7.into())]);
/// match client.upsert(UpsertPointsBuilder::new("docs", vec![point])).await? {
///     Written::Applied(response) => println!("applied: {:?}", response.result),
///     Written::Queued(queued) => println!("queued as #{}", queued.seq),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Written<T> {
    /// Qdrant applied the write and answered.
    Applied(T),
    /// The write-behind queue accepted it: it is fsynced and will be applied in order.
    Queued(Queued),
}

impl<T> Written<T> {
    /// Qdrant's answer, if it applied the write.
    pub fn applied(&self) -> Option<&T> {
        match self {
            Written::Applied(response) => Some(response),
            Written::Queued(_) => None,
        }
    }

    /// The queue's receipt, if the write was queued.
    pub fn queued(&self) -> Option<Queued> {
        match self {
            Written::Applied(_) => None,
            Written::Queued(queued) => Some(*queued),
        }
    }

    /// Qdrant's answer, or the queue's receipt as the error.
    pub fn into_applied(self) -> Result<T, Queued> {
        match self {
            Written::Applied(response) => Ok(response),
            Written::Queued(queued) => Err(queued),
        }
    }
}

impl<S> Client<S>
where
    S: Service<VectorRequest, Response = VectorResponse> + Clone,
    S::Error: Into<VectorError>,
{
    /// Sends any request through the service: the escape hatch for the operations without a
    /// typed method (recommend, discover, snapshots, aliases…), and for a request that carries
    /// its own deadline.
    pub async fn call(
        &self,
        request: impl Into<VectorRequest>,
    ) -> Result<VectorResponse, VectorError> {
        let mut request = request.into();
        if let Some(timeout) = self.timeout {
            let deadline = Instant::now() + timeout;
            if request.deadline().is_none_or(|own| deadline < own) {
                request = request.with_deadline(deadline);
            }
        }
        // A reference count, not a copy: to name the call in a layer's rejection.
        let named = request.clone();
        self.service
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| {
                let error: VectorError = error.into();
                error.for_request(named.operation(), named.collection())
            })
    }

    /// Every point a scroll selects, page after page (following `next_page_offset`), as a
    /// stream. Each page is one call through the service, with its own deadline; the stream
    /// ends after the last page, or with the first error.
    ///
    /// ```no_run
    /// use futures_util::TryStreamExt;
    /// # use qdrant_tower::{Client, QdrantService};
    /// # use qdrant_tower::qdrant::ScrollPointsBuilder;
    /// # async fn example(client: Client<QdrantService>) -> Result<(), qdrant_tower::VectorError> {
    /// let points: Vec<_> = client
    ///     .scroll_all(ScrollPointsBuilder::new("docs").limit(100).with_payload(true))
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn scroll_all<R: Into<ScrollPoints>>(
        &self,
        request: R,
    ) -> impl Stream<Item = Result<RetrievedPoint, VectorError>> + use<S, R> {
        struct Pages<S> {
            client: Client<S>,
            request: Option<ScrollPoints>,
            page: std::vec::IntoIter<RetrievedPoint>,
        }
        let pages = Pages {
            client: self.clone(),
            request: Some(request.into()),
            page: Vec::new().into_iter(),
        };
        stream::try_unfold(pages, |mut pages| async move {
            loop {
                if let Some(point) = pages.page.next() {
                    return Ok(Some((point, pages)));
                }
                let Some(request) = pages.request.take() else {
                    return Ok(None);
                };
                let next = request.clone();
                let answer = pages.client.scroll(request).await?;
                if let Some(mark) = answer.fallback() {
                    // A stream of points cannot mark one page: only fresh pages are yielded.
                    return Err(VectorError::new(
                        mark.cause,
                        "scroll",
                        format!(
                            "Qdrant failed ({}) and the stack answered a page from its {} fallback; scroll_all yields only fresh pages",
                            mark.cause, mark.source
                        ),
                    ));
                }
                let answer = answer.into_inner();
                pages.request = next_page(next, answer.next_page_offset);
                pages.page = answer.result.into_iter();
            }
        })
    }

    /// Create a collection (`CreateCollectionBuilder`).
    ///
    /// Creating is not idempotent: a second create answers `ALREADY_EXISTS`, so retry layers
    /// do not retry it, and a create whose answer was lost (a timeout, a dropped connection)
    /// leaves you not knowing whether it applied. With
    /// [`with_idempotent_create`](Self::with_idempotent_create) (or the stack's
    /// `idempotent_create`), the create is sent as retry-safe, and when a retry — an attempt
    /// after the first — answers `ALREADY_EXISTS`, the client reads the collection back and
    /// answers success if it has the requested vectors (names, sizes and distances), sparse
    /// vectors and, if set, shard number; otherwise the `ALREADY_EXISTS` error stands. A
    /// collection that existed before the call still fails on the first attempt. (If someone
    /// else created the same collection between two attempts, that counts as created too:
    /// the end state is the one asked for.)
    ///
    /// ```no_run
    /// # use qdrant_tower::Client;
    /// # use qdrant_tower::qdrant::{CreateCollectionBuilder, Distance, VectorParamsBuilder};
    /// # async fn example(client: Client<qdrant_tower::StackService>) -> Result<(), qdrant_tower::VectorError> {
    /// client
    ///     .with_idempotent_create(true)
    ///     .create_collection(
    ///         CreateCollectionBuilder::new("docs")
    ///             .vectors_config(VectorParamsBuilder::new(384, Distance::Cosine)),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_collection(
        &self,
        request: impl Into<CreateCollection>,
    ) -> Result<CollectionOperationResponse, VectorError> {
        let create: CreateCollection = request.into();
        let mut call = VectorRequest::new(VectorOp::CreateCollection(create.clone()));
        if self.idempotent_create {
            call = call.retry_safe();
        }
        let error = match self.call(call).await {
            Ok(VectorResponse::CreateCollection(response)) => return Ok(response),
            Ok(other) => return Err(mismatched("CreateCollection", &other)),
            Err(error) => error,
        };
        if !(self.idempotent_create
            && error.kind() == ErrorKind::AlreadyExists
            && error.attempts() > 1)
        {
            return Err(error);
        }
        let info = self
            .collection_info(GetCollectionInfoRequest {
                collection_name: create.collection_name.clone(),
            })
            .await?;
        let params = info
            .into_inner()
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params);
        match params {
            Some(params) if same_collection(&create, &params) => Ok(CollectionOperationResponse {
                result: true,
                time: 0.0,
            }),
            _ => Err(error),
        }
    }

    /// A large upsert as chunks sent with bounded concurrency through the service
    /// ([`upsert_chunked`](crate::upsert_chunked)): each chunk is reported as acknowledged or
    /// failed with its own request and error, so nothing is lost silently.
    pub async fn upsert_chunked(
        &self,
        request: impl Into<UpsertPoints>,
        options: ChunkOptions,
    ) -> ChunkedUpsert<VectorError> {
        let service = self
            .service
            .clone()
            .map_err(Into::into as fn(S::Error) -> VectorError);
        crate::upsert_chunked(service, request.into(), options).await
    }
}

/// Whether an existing collection's `params` are what `create` asked for: the same dense
/// vectors (names, sizes, distances), the same sparse vector names and, if asked, the same
/// shard number.
fn same_collection(create: &CreateCollection, params: &CollectionParams) -> bool {
    fn dense(config: Option<&VectorsConfig>) -> Option<Vec<(String, u64, i32)>> {
        let mut vectors = match config?.config.as_ref()? {
            vectors_config::Config::Params(p) => vec![(String::new(), p.size, p.distance)],
            vectors_config::Config::ParamsMap(map) => map
                .map
                .iter()
                .map(|(name, p)| (name.clone(), p.size, p.distance))
                .collect(),
        };
        vectors.sort();
        Some(vectors)
    }
    fn sparse(config: Option<&SparseVectorConfig>) -> Vec<&String> {
        let mut names: Vec<_> = config.map(|c| c.map.keys().collect()).unwrap_or_default();
        names.sort();
        names
    }
    dense(create.vectors_config.as_ref()) == dense(params.vectors_config.as_ref())
        && sparse(create.sparse_vectors_config.as_ref())
            == sparse(params.sparse_vectors_config.as_ref())
        && create
            .shard_number
            .is_none_or(|shards| shards == params.shard_number)
}

/// The scroll request for the page after one that answered `offset`.
fn next_page(mut request: ScrollPoints, offset: Option<PointId>) -> Option<ScrollPoints> {
    request.offset = Some(offset?);
    Some(request)
}

fn mismatched(expected: &'static str, got: &VectorResponse) -> VectorError {
    VectorError::new(
        ErrorKind::Internal,
        got.operation(),
        format!(
            "the service answered a {expected} request with a {} response",
            got.operation()
        ),
    )
}
