//! `qdrant.Snapshots`: create, list and delete collection snapshots and full snapshots, stored
//! in the data directory (see `storage::snapshots`).
//!
//! Qdrant's gRPC API has no snapshot download or recovery RPC (both are REST-only), so neither
//! does this service; [`TestServer::recover_snapshot`](crate::TestServer::recover_snapshot)
//! restores a collection from a snapshot file instead.

use std::time::{Instant, UNIX_EPOCH};

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::snapshots_server::Snapshots;
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use crate::storage::{SnapshotInfo, StorageError};

#[tonic::async_trait]
impl Snapshots for QdrantApi {
    async fn create(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        let snapshot = self.storage().create_snapshot(&name).await?;
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot_description: Some(description(snapshot)),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        let snapshots = self.storage().list_snapshots(&name).await?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshot_descriptions: snapshots.into_iter().map(description).collect(),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        check_snapshot_name(&request.snapshot_name)?;
        self.storage()
            .delete_snapshot(&request.collection_name, &request.snapshot_name)
            .await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn create_full(
        &self,
        _request: Request<pb::CreateFullSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        let started = Instant::now();
        let snapshot = self.storage().create_full_snapshot().await?;
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot_description: Some(description(snapshot)),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list_full(
        &self,
        _request: Request<pb::ListFullSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let started = Instant::now();
        let snapshots = self.storage().list_full_snapshots().await?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshot_descriptions: snapshots.into_iter().map(description).collect(),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn delete_full(
        &self,
        request: Request<pb::DeleteFullSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().snapshot_name;
        check_snapshot_name(&name)?;
        self.storage().delete_full_snapshot(&name).await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {
            time: started.elapsed().as_secs_f64(),
        }))
    }
}

/// Qdrant's request validation: `snapshot_name` must not be empty.
fn check_snapshot_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() {
        return Err(StorageError::invalid_argument(
            "Validation error in body: [snapshot_name: length must be at least 1]",
        ));
    }
    Ok(())
}

/// Qdrant reports the creation time to the second.
fn description(snapshot: SnapshotInfo) -> pb::SnapshotDescription {
    pb::SnapshotDescription {
        name: snapshot.name,
        creation_time: snapshot
            .created
            .and_then(|created| created.duration_since(UNIX_EPOCH).ok())
            .map(|since| prost_types::Timestamp {
                seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        size: i64::try_from(snapshot.size).unwrap_or(i64::MAX),
        checksum: snapshot.checksum,
    }
}
