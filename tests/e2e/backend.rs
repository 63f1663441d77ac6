//! Where a test's calls end up: the embedded server, or the real Qdrant at `QDRANT_URL` (with
//! `QDRANT_API_KEY` when set), so that tests whose faults come from the chaos proxy (a network
//! effect, not the testkit's fault injection) hold against both.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};

use qdrant_tower::qdrant::DeleteCollectionBuilder;
use qdrant_tower::{QdrantService, QdrantServiceBuilder};
use qdrant_tower_testkit::TestServer;
use tower::ServiceExt;

/// A fresh embedded server per test, or the shared real Qdrant.
pub enum Backend {
    Embedded(TestServer),
    Real { url: String, addr: SocketAddr },
}

impl Backend {
    /// The real Qdrant at `QDRANT_URL` when it is set, else a new embedded server.
    pub async fn start() -> Backend {
        match std::env::var("QDRANT_URL") {
            Ok(url) if !url.is_empty() => {
                let addr = resolve(&url);
                Backend::Real { url, addr }
            }
            _ => Backend::Embedded(TestServer::start().await.expect("testkit server starts")),
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Backend::Real { .. })
    }

    /// The gRPC address, for a proxy in front of it.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Backend::Embedded(server) => server.addr(),
            Backend::Real { addr, .. } => *addr,
        }
    }

    pub fn url(&self) -> String {
        match self {
            Backend::Embedded(server) => server.url(),
            Backend::Real { url, .. } => url.clone(),
        }
    }

    /// A client talking to the backend directly.
    pub fn direct(&self) -> QdrantService {
        client_of(&self.url()).build().expect("valid settings")
    }

    /// A name no other test (in this run or an earlier one) uses on a shared real server.
    pub fn unique(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        match self {
            // An embedded server is the test's own: keep the plain name.
            Backend::Embedded(_) => prefix.to_owned(),
            Backend::Real { .. } => format!(
                "{prefix}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// Deletes `collections` from a real server (an embedded one goes with the test). Runs on a
    /// thread of its own so it can be called from `Drop` inside a runtime.
    pub fn drop_collections(&self, collections: &[String]) {
        if !self.is_real() {
            return;
        }
        let url = self.url();
        let collections = collections.to_vec();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(async {
                // Built here: a channel's worker runs on the runtime that builds it.
                let service = client_of(&url).build().expect("valid settings");
                for name in collections {
                    // Missing (never created) is fine; anything else is only left behind.
                    let _ = service
                        .clone()
                        .oneshot(DeleteCollectionBuilder::new(name).into())
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A client builder for `url` carrying `QDRANT_API_KEY` when set (a real server may need it;
/// the embedded server ignores it unless told to check one).
pub fn client_of(url: &str) -> QdrantServiceBuilder {
    QdrantService::builder().endpoint(url).api_key(
        std::env::var("QDRANT_API_KEY")
            .ok()
            .filter(|key| !key.is_empty()),
    )
}

fn resolve(url: &str) -> SocketAddr {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("QDRANT_URL `{url}` is not host:port"))
}

/// Creates `name` (2-d, dot product) through `client` and puts point 1 at [1, 0] in it.
pub async fn collection_with_a_point<S>(client: &qdrant_tower::Client<S>, name: &str)
where
    S: tower::Service<
            qdrant_tower::VectorRequest,
            Response = qdrant_tower::VectorResponse,
            Error = qdrant_tower::VectorError,
        > + Clone,
{
    use qdrant_tower::qdrant::{
        CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
    };
    client
        .create_collection(
            CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
        )
        .await
        .expect("collection created");
    let point = PointStruct::new(1, vec![1.0, 0.0], qdrant_tower::Payload::new());
    client
        .upsert(UpsertPointsBuilder::new(name, vec![point]).wait(true))
        .await
        .expect("point upserted");
}
