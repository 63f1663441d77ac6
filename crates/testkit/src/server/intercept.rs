//! The front of every gRPC method: [`Intercepted`] wraps [`QdrantApi`], checks the call's API
//! key, records the call in the [`CallLog`], asks the [`Faults`] plan about it, and acts on the
//! answer around the real handler.
//!
//! The trait impls are generated from the RPC table in `faults::rpc`, so every method of
//! `Qdrant`, `Collections`, `Points` and `Snapshots` goes through [`Hooks::run`].

use std::future::Future;
use std::sync::Arc;

use qdrant_client::qdrant as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::auth::{self, Access, ApiKeys};
use super::conn::{ConnInfo, Connections};
use crate::faults::plan::Answer;
use crate::faults::{CallLog, CallRecord, FaultRequest, Faults, Rpc, qdrant_rpcs};

/// What the server shares with its handlers for auth, call recording and fault injection.
/// Everything but `closing` outlives a restart.
#[derive(Debug)]
pub(crate) struct Hooks {
    pub(crate) faults: Faults,
    pub(crate) calls: CallLog,
    pub(crate) connections: Arc<Connections>,
    pub(crate) keys: Arc<ApiKeys>,
    /// Whether calls are recorded in `calls` (ids are assigned either way).
    pub(crate) record: bool,
    /// Set to true when the server starts shutting down, to release hung calls.
    closing: watch::Sender<bool>,
}

impl Hooks {
    pub(crate) fn new(
        faults: Faults,
        calls: CallLog,
        connections: Arc<Connections>,
        keys: Arc<ApiKeys>,
        record: bool,
    ) -> Self {
        Hooks {
            faults,
            calls,
            connections,
            keys,
            record,
            closing: watch::Sender::new(false),
        }
    }

    /// The same hooks with a fresh shutdown signal, for a restarted server.
    pub(crate) fn renewed(&self) -> Self {
        Hooks::new(
            self.faults.clone(),
            self.calls.clone(),
            Arc::clone(&self.connections),
            Arc::clone(&self.keys),
            self.record,
        )
    }

    /// Releases every hung call (they answer `UNAVAILABLE`), for a graceful shutdown.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Runs one call of `rpc` through the API key check and the fault plan around `handler`.
    /// `collection` reads the request's collection name, for the RPCs that have one.
    async fn run<Req, Resp, C, F, Fut>(
        &self,
        api: &QdrantApi,
        rpc: Rpc,
        collection: C,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone + Send + Sync + 'static,
        C: FnOnce(&Req) -> Option<&str>,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let id = self.calls.next_id();
        let conn = request.extensions().get::<ConnInfo>().copied();
        let connection_id = conn.map_or(0, |conn| conn.id);
        let remote_addr = conn.and_then(|conn| conn.remote_addr);
        let fault = {
            let collection = collection(request.get_ref());
            let record = |faulted: bool, denied: bool| {
                if self.record {
                    self.calls.record(CallRecord {
                        id,
                        connection_id,
                        rpc,
                        collection,
                        faulted,
                        denied,
                        remote_addr,
                        metadata: request.metadata(),
                        message: Arc::new(request.get_ref().clone()),
                    });
                }
            };
            if let Err(status) = self.authorize(api, rpc, collection, request.metadata()) {
                record(false, true);
                return Err(status);
            }
            let fault = self.faults.decide(&FaultRequest {
                id,
                connection_id,
                rpc,
                collection,
                message: request.get_ref(),
                remote_addr,
                metadata: request.metadata(),
            });
            record(fault.is_some(), false);
            fault
        };
        let Some(fault) = fault else {
            return handler(request).await;
        };

        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        if fault.apply_first || matches!(fault.answer, Answer::Proceed) {
            let result = handler(request).await;
            if matches!(fault.answer, Answer::Proceed) {
                return result;
            }
            // Applied: the handler's own answer is thrown away, whatever it was.
        }
        match &fault.answer {
            Answer::Proceed => unreachable!("answered above"),
            Answer::Status { .. } => Err(fault.to_status().expect("a status answer")),
            Answer::Hang => {
                let mut closing = self.closing.subscribe();
                // Ends only when the server closes; a client that gives up resets the stream,
                // and hyper drops this future with it.
                let _ = closing.wait_for(|closing| *closing).await;
                Err(Status::unavailable(
                    "Service unavailable: the server is shutting down",
                ))
            }
            Answer::DropConnection => {
                if !self.connections.kill(connection_id) {
                    tracing::warn!(%rpc, connection_id, "no connection to drop for this call");
                }
                // Never reaches the client when the connection was killed: every write fails.
                Err(Status::unavailable(
                    "connection dropped by an injected fault",
                ))
            }
        }
    }
}

impl Hooks {
    /// Whether the call's API key allows it, with Qdrant's answer if not. A write with the
    /// read-only key on a missing collection goes on to the handler when Qdrant would look the
    /// collection up first: it answers `NOT_FOUND` and applies nothing.
    fn authorize(
        &self,
        api: &QdrantApi,
        rpc: Rpc,
        collection: Option<&str>,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        if !self.keys.is_enabled() {
            return Ok(());
        }
        match self.keys.check(rpc, metadata)? {
            Access::ReadOnly if rpc.is_write() => {
                let missing = || collection.is_some_and(|name| !api.storage().exists(name));
                if auth::looks_up_collection_first(rpc) && missing() {
                    Ok(())
                } else {
                    Err(auth::forbidden())
                }
            }
            Access::ReadOnly | Access::ReadWrite => Ok(()),
        }
    }
}

/// Every gRPC service of the server, with the API key check, fault injection and call
/// recording in front.
#[derive(Debug, Clone)]
pub(crate) struct Intercepted {
    api: QdrantApi,
    hooks: Arc<Hooks>,
}

impl Intercepted {
    pub(crate) fn new(api: QdrantApi, hooks: Arc<Hooks>) -> Self {
        Intercepted { api, hooks }
    }
}

macro_rules! collection_of {
    ($request:ident, coll) => {
        Some($request.collection_name.as_str())
    };
    ($request:ident, none) => {{
        let _ = $request;
        None
    }};
}

macro_rules! intercept_services {
    ($(
        $module:ident :: $trait:ident, $service:literal, $short:ident {
            $( $variant:ident $method:literal $fn:ident ( $req:ident ) -> $resp:ident, $coll:ident, $kind:ident; )*
        }
    )*) => {$(
        #[tonic::async_trait]
        impl pb::$module::$trait for Intercepted {
            $(
                async fn $fn(
                    &self,
                    request: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    let api = &self.api;
                    self.hooks
                        .run(
                            api,
                            Rpc::$variant,
                            |request: &pb::$req| collection_of!(request, $coll),
                            request,
                            |request| <QdrantApi as pb::$module::$trait>::$fn(api, request),
                        )
                        .await
                }
            )*
        }
    )*};
}

qdrant_rpcs!(intercept_services);
