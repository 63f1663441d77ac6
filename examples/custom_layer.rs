//! Writing your own layer and stacking it with qdrant-tower's: a per-tenant quota.
//!
//! ```text
//! cargo run --example custom_layer
//! ```
//!
//! Runs against the Qdrant at `QDRANT_URL` (with `QDRANT_API_KEY` if needed), or the embedded
//! testkit server when `QDRANT_URL` is unset.
//!
//! # The tutorial
//!
//! A tower middleware is two types: a [`Layer`] that wraps a service, and the [`Service`] it
//! wraps it in. Ours, `TenantQuota`, gives each tenant (here: the part of the collection name
//! before the first `_`) a budget of calls per second and rejects the rest before they reach
//! Qdrant.
//!
//! 1. **The layer** holds the configuration and the state every clone must share (the
//!    buckets, behind an `Arc`), and is cheap to clone: `QdrantStack` clones it into each
//!    service it builds.
//! 2. **`poll_ready`** forwards to the inner service. A quota is decided per request, so it
//!    cannot be decided here; never report "not ready" for a reason that concerns one request
//!    only, or a `Buffer` in front would stall every caller.
//! 3. **`call`** decides. Admitted: the inner service's future. Rejected: an error at once,
//!    without touching the inner service. `Either` names both futures in one type, so nothing
//!    is boxed on the way of a call.
//! 4. **The error** is a [`VectorError`] with an [`ErrorKind`], so the rest of the stack and
//!    the caller treat it like any other: `RateLimited` with a `retry_after` hint, and
//!    `maybe_sent(false)` (it never left the process).
//! 5. **Where it goes.** [`QdrantStackBuilder::around_call`] puts it outside the whole stack: it
//!    sees each call once, as the caller made it, before the deadline starts and before any
//!    retry — the right place for a quota on what callers ask for. `per_attempt` would put it
//!    below the retry layer, where it would count (and could reject) every retry too.
//!
//! [`QdrantStackBuilder::around_call`]: qdrant_tower::QdrantStackBuilder::around_call

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use qdrant_tower::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, DeleteCollectionBuilder, Distance,
    VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Profile, QdrantStack, RequestInfo, VectorError, VectorRequest};
use qdrant_tower_testkit::TestServer;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Each tenant may make `per_second` calls a second; the rest are rejected as `RateLimited`.
#[derive(Clone)]
struct TenantQuotaLayer {
    per_second: u32,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

/// What is left of one tenant's second.
struct Bucket {
    since: Instant,
    left: u32,
}

impl TenantQuotaLayer {
    fn new(per_second: u32) -> Self {
        TenantQuotaLayer {
            per_second,
            buckets: Arc::default(),
        }
    }

    /// Takes one call from `tenant`'s budget, or says how long until the next second.
    fn admit(&self, tenant: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("no panics while held");
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            since: now,
            left: self.per_second,
        });
        if now.duration_since(bucket.since) >= Duration::from_secs(1) {
            *bucket = Bucket {
                since: now,
                left: self.per_second,
            };
        }
        if bucket.left == 0 {
            return Err(Duration::from_secs(1) - now.duration_since(bucket.since));
        }
        bucket.left -= 1;
        Ok(())
    }
}

impl<S> Layer<S> for TenantQuotaLayer {
    type Service = TenantQuota<S>;

    fn layer(&self, inner: S) -> TenantQuota<S> {
        TenantQuota {
            inner,
            quota: self.clone(),
        }
    }
}

/// The service `TenantQuotaLayer` wraps around the stack.
#[derive(Clone)]
struct TenantQuota<S> {
    inner: S,
    quota: TenantQuotaLayer,
}

impl<S> Service<VectorRequest> for TenantQuota<S>
where
    S: Service<VectorRequest, Error = VectorError>,
{
    type Response = S::Response;
    type Error = VectorError;
    type Future = Either<S::Future, Ready<Result<S::Response, VectorError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), VectorError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        let tenant = request
            .collection()
            .and_then(|name| name.split('_').next())
            .unwrap_or("");
        match self.quota.admit(tenant) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(wait) => {
                let message = format!(
                    "tenant `{tenant}` is over its quota of {} calls/s",
                    self.quota.per_second
                );
                let error = VectorError::new(ErrorKind::RateLimited, request.operation(), message)
                    .with_collection(request.collection())
                    .with_retry_after(Some(wait))
                    .with_maybe_sent(false);
                Either::Right(ready(Err(error)))
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _embedded) = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = TestServer::start().await?;
            println!("QDRANT_URL is unset: started the embedded testkit server");
            (server.url(), Some(server))
        }
    };

    // Our layer around the whole call; the recommended stack inside it.
    let stack = QdrantStack::builder()
        .endpoint(&url)
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .profile(Profile::Development)
        .around_call(TenantQuotaLayer::new(5))
        .build()?;
    let client = stack.client();

    let collections = ["acme_docs", "globex_docs"];
    for name in collections {
        // Two calls per tenant, then a fresh second before the quota is put to the test.
        let _ = client
            .delete_collection(DeleteCollectionBuilder::new(name))
            .await;
        client
            .create_collection(
                CreateCollectionBuilder::new(name)
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // `acme` makes 8 calls within a second: 5 pass, 3 are refused before reaching Qdrant.
    let (mut passed, mut refused) = (0, 0);
    for _ in 0..8 {
        match client.count(CountPointsBuilder::new("acme_docs")).await {
            Ok(_) => passed += 1,
            Err(error) if error.kind() == ErrorKind::RateLimited => {
                refused += 1;
                println!("refused: {error}");
                assert!(!error.maybe_sent());
            }
            Err(error) => return Err(error.into()),
        }
    }
    println!("acme: {passed} passed, {refused} refused by its quota");
    assert_eq!((passed, refused), (5, 3));

    // Another tenant has a budget of its own.
    client.count(CountPointsBuilder::new("globex_docs")).await?;
    println!("globex: not affected by acme's quota");
    println!(
        "the breaker saw {} calls: refusals never reached it",
        stack.breaker().snapshot().calls
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for name in collections {
        client
            .delete_collection(DeleteCollectionBuilder::new(name))
            .await?;
    }
    Ok(())
}
