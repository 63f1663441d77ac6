//! `qdrant.Snapshots`: served only so that each RPC can say it is not implemented, instead of the
//! bare `UNIMPLEMENTED` tonic answers for an unknown service.

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::snapshots_server::Snapshots;
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::status::unimplemented;

#[tonic::async_trait]
impl Snapshots for QdrantApi {
    async fn create(
        &self,
        _request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        Err(unimplemented("Snapshots/Create"))
    }

    async fn list(
        &self,
        _request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        Err(unimplemented("Snapshots/List"))
    }

    async fn delete(
        &self,
        _request: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        Err(unimplemented("Snapshots/Delete"))
    }

    async fn create_full(
        &self,
        _request: Request<pb::CreateFullSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        Err(unimplemented("Snapshots/CreateFull"))
    }

    async fn list_full(
        &self,
        _request: Request<pb::ListFullSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        Err(unimplemented("Snapshots/ListFull"))
    }

    async fn delete_full(
        &self,
        _request: Request<pb::DeleteFullSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        Err(unimplemented("Snapshots/DeleteFull"))
    }
}
