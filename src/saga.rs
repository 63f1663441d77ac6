//! Dual-store writes: a Qdrant write and a step of your own (a SQL row, a graph node) as one
//! unit, compensated when the step fails — never a silent half-write.
//!
//! [`Saga::write`] reads the points the write touches (payload and every vector: the
//! before-image), sends the write, then runs your step. If the step fails, the write is
//! compensated: points that did not exist are deleted, points that did are put back as they
//! were. If the compensation fails too, it goes into the [write-behind queue](crate::queue)
//! given with [`Saga::repair_into`] (durable, replayed when Qdrant is back); without one, the
//! error carries the repair requests. Every outcome says what state Qdrant was left in.
//!
//! ```no_run
//! use qdrant_tower::qdrant::{PointStruct, UpsertPointsBuilder};
//! use qdrant_tower::saga::{Saga, SagaError};
//! use qdrant_tower::QdrantStack;
//!
//! # async fn insert_row(id: u64) -> Result<(), std::io::Error> { Ok(()) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = QdrantStack::builder().endpoint("http://localhost:6334").build()?;
//! let saga = Saga::new(stack.client());
//! let point = PointStruct::new(42, vec![0.1, 0.2], [("title", "Dune".into())]);
//! match saga
//!     .write(UpsertPointsBuilder::new("docs", vec![point]), || insert_row(42))
//!     .await
//! {
//!     Ok(()) => println!("in both stores"),
//!     Err(SagaError::Step { error, compensation }) => {
//!         println!("the row failed ({error}); Qdrant: {compensation:?}")
//!     }
//!     Err(other) => println!("nothing done in the other store: {other}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # What it covers
//! Point writes that name their points: upsert, update vectors, and delete points, set,
//! overwrite, delete or clear payload and delete vectors by a list of ids. A write selecting
//! its points by a filter is refused (`InvalidRequest`): its points cannot be read back
//! exactly. The write is sent with `wait: true`, so that the step runs after Qdrant applied it.
//!
//! Compensation restores the before-image; a write someone else made to the same points in
//! between is overwritten by it (as with any saga without locks). A write that failed but may
//! have applied (a timeout, a dropped connection) is compensated too, and the step is not run.

use std::fmt;
use std::future::Future;

use prost::Message as _;
use tower::Service;

use qdrant_tower_client::qdrant::{
    DeletePoints, GetPoints, PointId, PointStruct, PointsIdsList, PointsSelector, RetrievedPoint,
    ShardKeySelector, UpsertPoints, Vectors, WithPayloadSelector, WithVectorsSelector,
    points_selector::PointsSelectorOneOf, with_payload_selector, with_vectors_selector,
};
use qdrant_tower_client::{Queued, VectorError, VectorOp, VectorRequest, VectorResponse};
use qdrant_tower_layers::ErrorKind;

use crate::Client;
use crate::queue::WriteBehindHandle;

/// Runs a Qdrant write and your own step as one unit; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Saga<S> {
    client: Client<S>,
    repair: Option<WriteBehindHandle>,
}

/// What became of the Qdrant write after the unit failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Compensation {
    /// Nothing to undo: the write did not apply.
    NotNeeded,
    /// Undone: the points are as the before-image had them.
    Applied,
    /// Qdrant refused the undo; it is in the write-behind queue, applied when Qdrant is back.
    Queued(Vec<Queued>),
    /// Qdrant refused the undo and there is no queue (or it refused too): these requests,
    /// sent in order, undo the write. Nothing was done with them.
    Failed {
        /// Why the undo failed.
        error: VectorError,
        /// The undo, to send again.
        repair: Vec<VectorOp>,
    },
}

/// Why a saga did not complete, and what Qdrant holds now.
#[derive(Debug)]
#[non_exhaustive]
pub enum SagaError<E> {
    /// The write cannot be part of a saga, or the before-image could not be read: nothing
    /// was written, the step did not run.
    Read(VectorError),
    /// The Qdrant write failed: the step did not run. If it may have applied, it was
    /// compensated.
    Write {
        /// The write's error.
        error: VectorError,
        /// What was done about a write that may have applied.
        compensation: Compensation,
    },
    /// Your step failed after the Qdrant write: the write was compensated.
    Step {
        /// Your step's error.
        error: E,
        /// What became of the Qdrant write.
        compensation: Compensation,
    },
}

impl<E: fmt::Display> fmt::Display for SagaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SagaError::Read(error) => write!(f, "saga not started: {error}"),
            SagaError::Write {
                error,
                compensation,
            } => write!(f, "the Qdrant write failed ({error}); {compensation}"),
            SagaError::Step {
                error,
                compensation,
            } => write!(f, "the step failed ({error}); {compensation}"),
        }
    }
}

impl fmt::Display for Compensation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compensation::NotNeeded => f.write_str("nothing to undo in Qdrant"),
            Compensation::Applied => f.write_str("the Qdrant write was undone"),
            Compensation::Queued(queued) => write!(
                f,
                "the undo of the Qdrant write is queued ({} record(s), from #{})",
                queued.len(),
                queued.first().map_or(0, |q| q.seq)
            ),
            Compensation::Failed { error, repair } => write!(
                f,
                "the undo of the Qdrant write FAILED ({error}); {} repair request(s) returned",
                repair.len()
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SagaError<E> {}

impl<S> Saga<S>
where
    S: Service<VectorRequest, Response = VectorResponse> + Clone,
    S::Error: Into<VectorError>,
{
    /// A saga over `client`'s service.
    pub fn new(client: Client<S>) -> Self {
        Saga {
            client,
            repair: None,
        }
    }

    /// Where an undo Qdrant refuses goes: this write-behind queue
    /// ([`QdrantStack::queue`](crate::QdrantStack::queue), or your own).
    pub fn repair_into(mut self, queue: WriteBehindHandle) -> Self {
        self.repair = Some(queue);
        self
    }

    /// Sends `write` to Qdrant, then runs `step`; undoes the write if `step` fails.
    pub async fn write<T, E, F, Fut>(
        &self,
        write: impl Into<VectorOp>,
        step: F,
    ) -> Result<T, SagaError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut op = write.into();
        let target = touched(&mut op).map_err(SagaError::Read)?;
        let before = self
            .client
            .call(GetPoints {
                collection_name: target.collection.clone(),
                ids: target.ids.clone(),
                with_payload: Some(WithPayloadSelector {
                    selector_options: Some(with_payload_selector::SelectorOptions::Enable(true)),
                }),
                with_vectors: Some(WithVectorsSelector {
                    selector_options: Some(with_vectors_selector::SelectorOptions::Enable(true)),
                }),
                shard_key_selector: target.shard_key.clone(),
                ..Default::default()
            })
            .await
            .map_err(SagaError::Read)?;
        let before = match before {
            VectorResponse::Get(got) => got.result,
            other => {
                return Err(SagaError::Read(VectorError::new(
                    ErrorKind::Unavailable,
                    "get",
                    format!(
                        "the before-image must be Qdrant's own answer, not a {} one",
                        if other.is_fresh() {
                            "mismatched"
                        } else {
                            "fallback"
                        }
                    ),
                )));
            }
        };
        if let Err(error) = self.client.call(op).await {
            let compensation = if error.maybe_sent() {
                self.undo(&target, before).await
            } else {
                Compensation::NotNeeded
            };
            return Err(SagaError::Write {
                error,
                compensation,
            });
        }
        match step().await {
            Ok(value) => Ok(value),
            Err(error) => Err(SagaError::Step {
                error,
                compensation: self.undo(&target, before).await,
            }),
        }
    }

    /// Puts the touched points back as `before` had them.
    async fn undo(&self, target: &Target, before: Vec<RetrievedPoint>) -> Compensation {
        let existed: Vec<&PointId> = before.iter().filter_map(|p| p.id.as_ref()).collect();
        let absent: Vec<PointId> = target
            .ids
            .iter()
            .filter(|id| !existed.contains(id))
            .cloned()
            .collect();
        let mut repair = Vec::new();
        if !before.is_empty() {
            repair.push(VectorOp::Upsert(UpsertPoints {
                collection_name: target.collection.clone(),
                wait: Some(true),
                points: before.into_iter().map(restored).collect(),
                shard_key_selector: target.shard_key.clone(),
                ..Default::default()
            }));
        }
        if !absent.is_empty() {
            repair.push(VectorOp::Delete(DeletePoints {
                collection_name: target.collection.clone(),
                wait: Some(true),
                points: Some(ids_selector(absent)),
                shard_key_selector: target.shard_key.clone(),
                ..Default::default()
            }));
        }
        let mut queued = Vec::new();
        let mut pending = repair.into_iter();
        while let Some(op) = pending.next() {
            match self.client.call(op.clone()).await {
                Ok(VectorResponse::Queued(receipt)) => queued.push(receipt),
                Ok(_) => {}
                Err(error) => {
                    let rest: Vec<VectorOp> = std::iter::once(op).chain(pending).collect();
                    return self.queue_repair(error, rest, queued).await;
                }
            }
        }
        if queued.is_empty() {
            Compensation::Applied
        } else {
            Compensation::Queued(queued)
        }
    }

    /// Queues the undo Qdrant refused, or returns it.
    async fn queue_repair(
        &self,
        error: VectorError,
        repair: Vec<VectorOp>,
        mut queued: Vec<Queued>,
    ) -> Compensation {
        let Some(queue) = &self.repair else {
            return Compensation::Failed { error, repair };
        };
        for (index, op) in repair.iter().enumerate() {
            match queue.enqueue(VectorRequest::new(op.clone())).await {
                Ok(receipt) => queued.push(receipt),
                Err(refused) => {
                    tracing::error!(%error, %refused, "saga: the undo failed and could not be queued");
                    return Compensation::Failed {
                        error: refused,
                        repair: repair[index..].to_vec(),
                    };
                }
            }
        }
        tracing::warn!(%error, "saga: the undo failed; queued for replay");
        Compensation::Queued(queued)
    }
}

/// What a write touches: its collection, its points' ids, its shard key.
struct Target {
    collection: String,
    ids: Vec<PointId>,
    shard_key: Option<ShardKeySelector>,
}

/// The points `op` names (and sets `wait: true` on it); refuses writes without explicit ids.
fn touched(op: &mut VectorOp) -> Result<Target, VectorError> {
    fn listed(selector: Option<&PointsSelector>) -> Option<Vec<PointId>> {
        match selector?.points_selector_one_of.as_ref()? {
            PointsSelectorOneOf::Points(list) => Some(list.ids.clone()),
            PointsSelectorOneOf::Filter(_) => None,
        }
    }
    let operation = op.operation();
    // Sets `wait` and takes (collection, ids, shard key) of a write naming its points by a
    // selector (`None` ids: a filter, or no selector).
    macro_rules! by_selector {
        ($w:ident, $selector:ident) => {{
            $w.wait = Some(true);
            let ids = listed($w.$selector.as_ref()).map(|ids| ids.into_iter().map(Some).collect());
            (
                &$w.collection_name,
                ids.unwrap_or_default(),
                &$w.shard_key_selector,
            )
        }};
    }
    let (collection, ids, shard_key): (_, Vec<Option<PointId>>, _) = match op {
        VectorOp::Upsert(w) => {
            w.wait = Some(true);
            let ids = w.points.iter().map(|p| p.id.clone()).collect();
            (&w.collection_name, ids, &w.shard_key_selector)
        }
        VectorOp::UpdateVectors(w) => {
            w.wait = Some(true);
            let ids = w.points.iter().map(|p| p.id.clone()).collect();
            (&w.collection_name, ids, &w.shard_key_selector)
        }
        VectorOp::Delete(w) => by_selector!(w, points),
        VectorOp::SetPayload(w) | VectorOp::OverwritePayload(w) => by_selector!(w, points_selector),
        VectorOp::DeletePayload(w) => by_selector!(w, points_selector),
        VectorOp::ClearPayload(w) => by_selector!(w, points),
        VectorOp::DeleteVectors(w) => by_selector!(w, points_selector),
        _ => {
            return Err(VectorError::new(
                ErrorKind::InvalidRequest,
                operation,
                "a saga runs point writes (upsert, delete, payload or vector updates) only",
            ));
        }
    };
    let ids: Option<Vec<PointId>> = ids.into_iter().collect();
    let ids = ids.filter(|ids| !ids.is_empty()).ok_or_else(|| {
        VectorError::new(
            ErrorKind::InvalidRequest,
            operation,
            "a saga needs the write's points by explicit ids (every point with an id; no filter): \
             only those can be read before and put back after",
        )
        .with_collection(Some(collection.as_str()))
    })?;
    Ok(Target {
        collection: collection.clone(),
        ids,
        shard_key: shard_key.clone(),
    })
}

fn ids_selector(ids: Vec<PointId>) -> PointsSelector {
    PointsSelector {
        points_selector_one_of: Some(PointsSelectorOneOf::Points(PointsIdsList { ids })),
    }
}

/// A point as read, as a point to write back: the same id, payload and vectors.
/// `VectorsOutput` and `Vectors` share their protobuf layout (the same fields and tags), so
/// the vectors go across by their encoding, every kind (dense, sparse, multi, named) alike.
fn restored(point: RetrievedPoint) -> PointStruct {
    let vectors = point
        .vectors
        .and_then(|vectors| Vectors::decode(vectors.encode_to_vec().as_slice()).ok());
    PointStruct {
        id: point.id,
        payload: point.payload,
        vectors,
    }
}
