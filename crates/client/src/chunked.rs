//! Large upserts split into chunks sent with bounded concurrency, with every chunk accounted
//! for.

use futures_util::stream::{self, StreamExt};
use qdrant_client::qdrant::{PointsOperationResponse, UpsertPoints};
use tower::ServiceExt;
use tower_service::Service;

use crate::request::{VectorOp, VectorRequest, VectorResponse};

/// How [`upsert_chunked`] splits and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Points per request. Default 100, Qdrant's own recommendation for batch uploads.
    pub chunk_size: usize,
    /// Chunks in flight at once. Default 4.
    pub concurrency: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            chunk_size: 100,
            concurrency: 4,
        }
    }
}

/// The outcome of every chunk of an [`upsert_chunked`] call, in chunk order.
#[derive(Debug)]
pub struct ChunkedUpsert<E> {
    /// Chunks Qdrant acknowledged.
    pub succeeded: Vec<ChunkSuccess>,
    /// Chunks that failed, each with its request so the caller can send it again.
    pub failed: Vec<FailedChunk<E>>,
    /// Chunks the write-behind queue accepted (on disk, applied when Qdrant is back).
    pub queued: Vec<QueuedChunk>,
}

/// A chunk the write-behind queue accepted instead of sending: not yet in Qdrant.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedChunk {
    /// The chunk's position (0-based) in the original request.
    pub index: usize,
    /// How many points it carried.
    pub points: usize,
    /// Its place in the queue.
    pub queued: crate::Queued,
}

/// A chunk Qdrant acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSuccess {
    /// The chunk's position (0-based) in the original request.
    pub index: usize,
    /// How many points it carried.
    pub points: usize,
    /// Qdrant's answer.
    pub response: PointsOperationResponse,
}

/// A chunk that failed: nothing about it is lost.
#[derive(Debug)]
pub struct FailedChunk<E> {
    /// The chunk's position (0-based) in the original request.
    pub index: usize,
    /// The chunk's request, ready to be sent again.
    pub request: UpsertPoints,
    /// Why it failed.
    pub error: E,
}

impl<E> ChunkedUpsert<E> {
    /// Whether every chunk was acknowledged by Qdrant (none failed, none only queued).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.queued.is_empty()
    }

    /// Points acknowledged.
    pub fn points_written(&self) -> usize {
        self.succeeded.iter().map(|chunk| chunk.points).sum()
    }
}

/// Splits an upsert into chunks of `options.chunk_size` points and sends them through
/// `service` (a bare [`QdrantService`](crate::QdrantService) or a whole stack), at most
/// `options.concurrency` at a time.
///
/// Every chunk ends in [`ChunkedUpsert::succeeded`] or, with its request and error, in
/// [`ChunkedUpsert::failed`]: a failure never hides another chunk's outcome, and no point is
/// silently dropped. Chunks are independent requests, so a failure leaves the earlier
/// acknowledged chunks written (Qdrant has no multi-request transaction); upserts are
/// idempotent, so re-sending the failed chunks converges.
///
/// ```no_run
/// # async fn example(service: qdrant_tower_client::QdrantService) {
/// use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder};
/// use qdrant_tower_client::{ChunkOptions, upsert_chunked};
///
/// let points: Vec<PointStruct> = (0..10_000_u64)
///     .map(|id| PointStruct::new(id, vec![id as f32, 1.0], [("n", (id as i64).into())]))
///     .collect();
/// let report = upsert_chunked(
///     service,
///     UpsertPointsBuilder::new("docs", points).wait(true).build(),
///     ChunkOptions::default(),
/// )
/// .await;
/// for chunk in &report.failed {
///     eprintln!("chunk {} ({} points) failed: {}", chunk.index, chunk.request.points.len(), chunk.error);
/// }
/// # }
/// ```
pub async fn upsert_chunked<S>(
    service: S,
    mut request: UpsertPoints,
    options: ChunkOptions,
) -> ChunkedUpsert<S::Error>
where
    S: Service<VectorRequest, Response = VectorResponse> + Clone,
{
    let chunk_size = options.chunk_size.max(1);
    let mut points = std::mem::take(&mut request.points).into_iter();
    let mut chunks = Vec::new();
    loop {
        let chunk: Vec<_> = points.by_ref().take(chunk_size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(UpsertPoints {
            points: chunk,
            ..request.clone()
        });
    }

    let mut outcomes: Vec<_> = stream::iter(chunks.into_iter().enumerate())
        .map(|(index, chunk)| {
            let service = service.clone();
            async move {
                let points = chunk.points.len();
                let request = VectorRequest::from(chunk);
                // Kept for the report: a clone shares the points instead of copying them.
                let kept = request.clone();
                let result = service.oneshot(request).await;
                (index, points, kept, result)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(index, _, _, _)| *index);

    let mut report = ChunkedUpsert {
        succeeded: Vec::new(),
        failed: Vec::new(),
        queued: Vec::new(),
    };
    for (index, points, kept, result) in outcomes {
        match result {
            Ok(VectorResponse::Upsert(response)) => report.succeeded.push(ChunkSuccess {
                index,
                points,
                response,
            }),
            Ok(VectorResponse::Queued(queued)) => report.queued.push(QueuedChunk {
                index,
                points,
                queued,
            }),
            Ok(other) => unreachable!(
                "an upsert was answered with a {} response",
                other.operation()
            ),
            Err(error) => {
                // The service is done with the request: this moves the points out, uncopied.
                let VectorOp::Upsert(request) = kept.into_op() else {
                    unreachable!("the chunk was built as an upsert")
                };
                report.failed.push(FailedChunk {
                    index,
                    request,
                    error,
                });
            }
        }
    }
    report
}
