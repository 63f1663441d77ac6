//! The state behind the gRPC services, and `qdrant.Qdrant` (the health check).

use std::sync::Arc;

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::qdrant_server::Qdrant;
use tonic::{Request, Response, Status};

use crate::storage::Storage;

/// The title Qdrant answers its health check with.
pub(crate) const TITLE: &str = "qdrant - vector search engine";

/// The Qdrant version the testkit reports. qdrant-client 1.20 accepts a server whose major
/// version is equal and whose minor version is at most one apart, so this stays in step with
/// the qdrant-client the workspace uses.
pub(crate) const VERSION: &str = "1.20.0";

/// One shared implementation of `Qdrant`, `Collections`, `Points` and `Snapshots`; cloning is
/// cheap.
///
/// Every RPC goes through these trait impls; `intercept::Intercepted` wraps them for fault
/// injection and call recording, without touching the storage.
#[derive(Debug, Clone)]
pub(crate) struct QdrantApi {
    storage: Arc<Storage>,
}

impl QdrantApi {
    pub(crate) fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }
}

#[tonic::async_trait]
impl Qdrant for QdrantApi {
    async fn health_check(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        Ok(Response::new(pb::HealthCheckReply {
            title: TITLE.to_owned(),
            version: VERSION.to_owned(),
            commit: Some(format!(
                "qdrant-tower-testkit {} (qdrant-edge engine)",
                env!("CARGO_PKG_VERSION")
            )),
        }))
    }
}
