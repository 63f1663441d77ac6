//! The fault-injecting front of every gRPC method: [`Intercepted`] wraps [`QdrantApi`], records
//! each call in the [`CallLog`], asks the [`Faults`] plan about it, and acts on the answer
//! around the real handler.
//!
//! The trait impls are generated from the RPC table in `faults::rpc`, so every method of
//! `Qdrant`, `Collections`, `Points` and `Snapshots` goes through [`Hooks::run`].

use std::future::Future;
use std::sync::Arc;

use qdrant_client::qdrant as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::conn::Connections;
use crate::faults::plan::Answer;
use crate::faults::{CallLog, FaultRequest, Faults, Rpc, qdrant_rpcs};

/// What the server shares with its handlers for fault injection.
#[derive(Debug)]
pub(crate) struct Hooks {
    pub(crate) faults: Faults,
    pub(crate) calls: CallLog,
    pub(crate) connections: Arc<Connections>,
    /// Set to true when the server starts shutting down, to release hung calls.
    closing: watch::Sender<bool>,
}

impl Hooks {
    pub(crate) fn new() -> Self {
        Hooks {
            faults: Faults::new(),
            calls: CallLog::new(),
            connections: Arc::new(Connections::default()),
            closing: watch::Sender::new(false),
        }
    }

    /// Releases every hung call (they answer `UNAVAILABLE`), for a graceful shutdown.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Runs one call of `rpc` through the fault plan around `handler`. `collection` reads the
    /// request's collection name, for the RPCs that have one.
    async fn run<Req, Resp, C, F, Fut>(
        &self,
        rpc: Rpc,
        collection: C,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Send + Sync + 'static,
        C: FnOnce(&Req) -> Option<&str>,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let remote_addr = request.remote_addr();
        let fault = {
            let collection = collection(request.get_ref());
            let fault = self.faults.decide(&FaultRequest {
                rpc,
                collection,
                message: request.get_ref(),
                remote_addr,
                metadata: request.metadata(),
            });
            self.calls.record(rpc, collection, fault.is_some());
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
                let killed = remote_addr.is_some_and(|peer| self.connections.kill(peer));
                if !killed {
                    tracing::warn!(%rpc, ?remote_addr, "no connection to drop for this call");
                }
                // Never reaches the client when the connection was killed: every write fails.
                Err(Status::unavailable(
                    "connection dropped by an injected fault",
                ))
            }
        }
    }
}

/// Every gRPC service of the server, with fault injection and call recording in front.
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
