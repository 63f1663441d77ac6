//! [`CallLog`]: which calls reached the server, and when.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use super::rpc::Rpc;

/// What a [`TestServer`](crate::TestServer) saw: every call that reached its handlers, by RPC
/// and collection, with the time it arrived (tokio's clock, so a test on a paused clock reads
/// paused-clock instants) and whether a fault was injected into it.
///
/// Use it to assert what the backend saw: "exactly 3 attempts", "no retry sooner than
/// `retry-after`", "no call while the breaker was open". Every call is recorded, faulted or not;
/// calls refused before a handler (a connection the proxy broke, a message tonic could not
/// decode) are not. RPCs without a collection (health check, list collections) are recorded
/// under the empty name `""`.
///
/// It is a handle: clones share one log. Recording costs a short lock and 16 bytes per call
/// (its instant); [`reset`](Self::reset) frees them.
///
/// ```
/// use qdrant_client::qdrant::HealthCheckRequest;
/// use qdrant_client::qdrant::qdrant_client::QdrantClient;
/// use qdrant_tower_testkit::TestServer;
/// use qdrant_tower_testkit::faults::Rpc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::start().await?;
/// let mut client = QdrantClient::connect(server.url()).await?;
/// client.health_check(HealthCheckRequest {}).await?;
/// client.health_check(HealthCheckRequest {}).await?;
///
/// let calls = server.calls();
/// assert_eq!(calls.count(Rpc::HealthCheck, ""), 2);
/// assert_eq!(calls.total(), 2);
/// let times = calls.times(Rpc::HealthCheck, "");
/// assert!(times[0] <= times[1]);
/// calls.reset();
/// assert_eq!(calls.total(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct CallLog {
    inner: Arc<Mutex<HashMap<Rpc, HashMap<String, Series>>>>,
}

#[derive(Debug, Default)]
struct Series {
    times: Vec<Instant>,
    faulted: usize,
}

impl CallLog {
    pub(crate) fn new() -> Self {
        CallLog::default()
    }

    /// Records one call that reached the handler.
    pub(crate) fn record(&self, rpc: Rpc, collection: Option<&str>, faulted: bool) {
        let now = Instant::now();
        let collection = collection.unwrap_or_default();
        let mut log = self.lock();
        let by_collection = log.entry(rpc).or_default();
        // Look up before inserting, so a known collection costs no allocation.
        let series = match by_collection.get_mut(collection) {
            Some(series) => series,
            None => by_collection.entry(collection.to_owned()).or_default(),
        };
        series.times.push(now);
        series.faulted += usize::from(faulted);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Rpc, HashMap<String, Series>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_series<T>(&self, rpc: Rpc, collection: &str, read: impl FnOnce(&Series) -> T) -> T
    where
        T: Default,
    {
        self.lock()
            .get(&rpc)
            .and_then(|by_collection| by_collection.get(collection))
            .map(read)
            .unwrap_or_default()
    }

    /// How many calls of `rpc` on `collection` reached the server.
    pub fn count(&self, rpc: Rpc, collection: &str) -> usize {
        self.with_series(rpc, collection, |series| series.times.len())
    }

    /// How many of those got an injected fault.
    pub fn faulted(&self, rpc: Rpc, collection: &str) -> usize {
        self.with_series(rpc, collection, |series| series.faulted)
    }

    /// When each call of `rpc` on `collection` arrived, in order.
    pub fn times(&self, rpc: Rpc, collection: &str) -> Vec<Instant> {
        self.with_series(rpc, collection, |series| series.times.clone())
    }

    /// How many calls of `rpc` reached the server, over every collection.
    pub fn count_rpc(&self, rpc: Rpc) -> usize {
        self.lock().get(&rpc).map_or(0, |by_collection| {
            by_collection
                .values()
                .map(|series| series.times.len())
                .sum()
        })
    }

    /// How many calls reached the server in all.
    pub fn total(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|by_collection| by_collection.values())
            .map(|series| series.times.len())
            .sum()
    }

    /// How many calls got an injected fault in all.
    pub fn total_faulted(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|by_collection| by_collection.values())
            .map(|series| series.faulted)
            .sum()
    }

    /// Forgets every call recorded so far.
    pub fn reset(&self) {
        self.lock().clear();
    }
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.lock();
        let mut map = f.debug_map();
        for (rpc, by_collection) in log.iter() {
            for (collection, series) in by_collection {
                map.entry(
                    &format_args!("{rpc} `{collection}`"),
                    &format_args!("{} ({} faulted)", series.times.len(), series.faulted),
                );
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_and_times_are_kept_per_rpc_and_collection() {
        let log = CallLog::new();
        let start = Instant::now();
        log.record(Rpc::Search, Some("a"), false);
        tokio::time::advance(Duration::from_secs(2)).await;
        log.record(Rpc::Search, Some("a"), true);
        log.record(Rpc::Search, Some("b"), false);
        log.record(Rpc::HealthCheck, None, false);

        assert_eq!(log.count(Rpc::Search, "a"), 2);
        assert_eq!(log.faulted(Rpc::Search, "a"), 1);
        assert_eq!(log.count(Rpc::Search, "b"), 1);
        assert_eq!(log.count(Rpc::Search, "c"), 0);
        assert_eq!(log.count(Rpc::HealthCheck, ""), 1);
        assert_eq!(log.count_rpc(Rpc::Search), 3);
        assert_eq!(log.total(), 4);
        assert_eq!(log.total_faulted(), 1);
        assert_eq!(
            log.times(Rpc::Search, "a"),
            vec![start, start + Duration::from_secs(2)]
        );
        log.reset();
        assert_eq!(log.total(), 0);
        assert!(log.times(Rpc::Search, "a").is_empty());
    }
}
