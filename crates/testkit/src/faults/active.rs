//! [`Faults`]: the live handle to a server's fault plan, and the per-call decision.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Action, Fault, FaultPlan, FaultRequest, FaultRule};

/// A cloneable handle to the fault plan of one [`TestServer`](crate::TestServer); every clone
/// changes the same server, at any moment, from any task or thread.
///
/// Get one from [`TestServer::faults`](crate::TestServer::faults) to hand to a scenario or a
/// background task. The server asks it once per call: with no plan installed that costs one
/// atomic load; with a plan, a short read lock to clone an `Arc`, then the rules are tried
/// without any lock except a rate limit's own (never held across an `.await`).
#[derive(Clone, Default)]
pub struct Faults {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Mirrors `plan.is_some()`, so an empty server skips the lock.
    active: AtomicBool,
    plan: RwLock<Option<Arc<ActivePlan>>>,
}

impl Faults {
    /// A handle with no plan, not attached to any server (the server creates its own).
    pub(crate) fn new() -> Self {
        Faults::default()
    }

    /// Installs `plan`, replacing the previous one. Its time windows start now (tokio's clock)
    /// and its triggers count from zero. An empty plan is the same as [`clear`](Self::clear).
    pub fn set(&self, plan: impl Into<FaultPlan>) {
        let plan = plan.into();
        let active = (!plan.is_empty()).then(|| Arc::new(ActivePlan::new(plan, Instant::now())));
        let mut slot = self
            .shared
            .plan
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared
            .active
            .store(active.is_some(), Ordering::Release);
        *slot = active;
    }

    /// Removes the plan: from now on every call is served normally. Calls already being
    /// delayed or hung keep their fault.
    pub fn clear(&self) {
        self.set(FaultPlan::new());
    }

    /// The installed plan, if any.
    pub fn plan(&self) -> Option<FaultPlan> {
        let slot = self
            .shared
            .plan
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().map(|active| FaultPlan {
            rules: active.rules.iter().map(|rule| rule.rule.clone()).collect(),
        })
    }

    /// Whether a plan is installed.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The fault for this call, if a rule takes it. Counts the call in every rule it reaches.
    pub(crate) fn decide(&self, call: &FaultRequest<'_>) -> Option<Arc<Fault>> {
        if !self.shared.active.load(Ordering::Acquire) {
            return None;
        }
        let plan = {
            let slot = self
                .shared
                .plan
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slot.as_ref()?)
        };
        plan.decide(call, Instant::now())
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("plan", &self.plan())
            .finish()
    }
}

/// An installed plan: the rules with their counters, and when it was installed.
struct ActivePlan {
    installed: Instant,
    rules: Vec<ActiveRule>,
}

struct ActiveRule {
    rule: FaultRule,
    /// Calls this rule has seen (matched and reached), for its trigger.
    seen: AtomicU64,
    /// A rate limit's buckets, by collection ("" for calls without one).
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A token bucket of a rate limit.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl ActivePlan {
    fn new(plan: FaultPlan, installed: Instant) -> Self {
        ActivePlan {
            installed,
            rules: plan
                .rules
                .into_iter()
                .map(|rule| ActiveRule {
                    rule,
                    seen: AtomicU64::new(0),
                    buckets: Mutex::new(HashMap::new()),
                })
                .collect(),
        }
    }

    fn decide(&self, call: &FaultRequest<'_>, now: Instant) -> Option<Arc<Fault>> {
        let elapsed = now.saturating_duration_since(self.installed);
        for active in &self.rules {
            let rule = &active.rule;
            if !rule.admits(call.rpc, call.collection, elapsed) {
                continue;
            }
            if let Some(predicate) = &rule.predicate
                && !predicate(call)
            {
                continue;
            }
            match &rule.action {
                Action::Inject { fault, trigger } => {
                    let n = active.seen.fetch_add(1, Ordering::Relaxed) + 1;
                    if trigger.fires(n) {
                        return Some(Arc::clone(fault));
                    }
                }
                Action::RateLimit { calls, per } => {
                    let key = call.collection.unwrap_or_default();
                    if let Some(wait) = active.take_token(key, *calls, *per, now) {
                        return Some(Arc::new(Fault::rate_limited(wait)));
                    }
                }
            }
        }
        None
    }
}

impl ActiveRule {
    /// Takes a token from `collection`'s bucket; `Some(wait)` if there was none, with the time
    /// until one is back.
    fn take_token(
        &self,
        collection: &str,
        calls: u32,
        per: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let capacity = f64::from(calls);
        if calls == 0 || per.is_zero() {
            return (calls == 0).then_some(per);
        }
        let rate = capacity / per.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match buckets.get_mut(collection) {
            Some(bucket) => bucket,
            None => buckets.entry(collection.to_owned()).or_insert(Bucket {
                tokens: capacity,
                updated: now,
            }),
        };
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::{SearchPoints, UpsertPoints};
    use tonic::Code;
    use tonic::metadata::MetadataMap;

    use super::*;
    use crate::faults::{Rpc, Trigger};

    const SECOND: Duration = Duration::from_secs(1);

    /// Asks `faults` about one call of `rpc` on `collection`; the code it would answer.
    fn ask(faults: &Faults, rpc: Rpc, collection: &str) -> Option<Code> {
        let metadata = MetadataMap::new();
        let message = SearchPoints::default();
        let call = FaultRequest {
            id: 1,
            connection_id: 1,
            rpc,
            collection: Some(collection),
            message: &message,
            remote_addr: None,
            metadata: &metadata,
        };
        faults
            .decide(&call)
            .map(|fault| fault.code().unwrap_or(Code::Ok))
    }

    fn plan(rule: FaultRule) -> Faults {
        let faults = Faults::new();
        faults.set(rule);
        faults
    }

    #[test]
    fn an_empty_handle_faults_nothing() {
        let faults = Faults::new();
        assert!(!faults.is_active());
        assert_eq!(ask(&faults, Rpc::Search, "a"), None);
        faults.set(FaultPlan::new());
        assert!(!faults.is_active());
        assert!(faults.plan().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn first_n_fails_exactly_the_first_n_matching_calls() {
        let faults = plan(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Search)
                .first(2),
        );
        assert_eq!(
            ask(&faults, Rpc::Count, "a"),
            None,
            "other RPCs do not count"
        );
        let seen: Vec<_> = (0..4).map(|_| ask(&faults, Rpc::Search, "a")).collect();
        assert_eq!(
            seen,
            [Some(Code::Unavailable), Some(Code::Unavailable), None, None]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_nth_and_after_n_count_per_rule() {
        let faults = plan(FaultRule::new(Fault::internal()).every_nth(3));
        let hits: Vec<bool> = (0..7)
            .map(|_| ask(&faults, Rpc::Search, "a").is_some())
            .collect();
        assert_eq!(hits, [false, false, true, false, false, true, false]);

        let faults = plan(FaultRule::new(Fault::internal()).after(2));
        let hits: Vec<bool> = (0..4)
            .map(|_| ask(&faults, Rpc::Search, "a").is_some())
            .collect();
        assert_eq!(hits, [false, false, true, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_faults_the_same_calls() {
        let pattern = |seed| {
            let faults = plan(FaultRule::new(Fault::unavailable()).probability(0.5, seed));
            (0..64)
                .map(|_| ask(&faults, Rpc::Search, "a").is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(pattern(7), pattern(7));
        assert_ne!(pattern(7), pattern(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_opens_and_closes_on_tokio_time() {
        let faults =
            plan(FaultRule::new(Fault::unavailable()).active_between(2 * SECOND, 5 * SECOND));
        assert_eq!(ask(&faults, Rpc::Search, "a"), None);
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(ask(&faults, Rpc::Search, "a"), Some(Code::Unavailable));
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(ask(&faults, Rpc::Search, "a"), Some(Code::Unavailable));
        tokio::time::advance(SECOND).await;
        assert_eq!(ask(&faults, Rpc::Search, "a"), None, "the end is excluded");
    }

    #[tokio::test(start_paused = true)]
    async fn installing_a_plan_restarts_its_window_and_counters() {
        let faults = Faults::new();
        let rule = FaultRule::new(Fault::unavailable())
            .first(1)
            .active_for(SECOND);
        faults.set(rule.clone());
        assert!(ask(&faults, Rpc::Search, "a").is_some());
        assert!(ask(&faults, Rpc::Search, "a").is_none());
        tokio::time::advance(2 * SECOND).await;
        faults.set(rule);
        assert!(ask(&faults, Rpc::Search, "a").is_some());
        faults.clear();
        assert!(!faults.is_active());
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_rule_that_takes_a_call_wins_and_later_rules_do_not_count_it() {
        let faults = Faults::new();
        faults.set(
            FaultPlan::new()
                .rule(FaultRule::new(Fault::unavailable()).first(1))
                .rule(FaultRule::new(Fault::internal()).first(1)),
        );
        assert_eq!(ask(&faults, Rpc::Search, "a"), Some(Code::Unavailable));
        assert_eq!(ask(&faults, Rpc::Search, "a"), Some(Code::Internal));
        assert_eq!(ask(&faults, Rpc::Search, "a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_predicate_sees_the_decoded_request() {
        let faults = plan(
            FaultRule::new(Fault::invalid_argument())
                .when(|call| call.message::<SearchPoints>().is_some_and(|m| m.limit > 10)),
        );
        let metadata = MetadataMap::new();
        let big = SearchPoints {
            limit: 11,
            ..SearchPoints::default()
        };
        let small = SearchPoints {
            limit: 3,
            ..SearchPoints::default()
        };
        let upsert = UpsertPoints::default();
        let call = |message: &(dyn std::any::Any + Send + Sync)| {
            let call = FaultRequest {
                id: 1,
                connection_id: 1,
                rpc: Rpc::Search,
                collection: Some("a"),
                message,
                remote_addr: None,
                metadata: &metadata,
            };
            faults.decide(&call).is_some()
        };
        assert!(call(&big));
        assert!(!call(&small));
        assert!(!call(&upsert), "another message type does not match");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_allows_a_burst_per_collection_then_says_when_to_retry() {
        // 3 calls per 6 s: a token every 2 s.
        let faults = plan(FaultRule::rate_limit(3, 6 * SECOND).rpc(Rpc::Upsert));
        for _ in 0..3 {
            assert_eq!(ask(&faults, Rpc::Upsert, "a"), None);
        }
        let metadata = MetadataMap::new();
        let message = UpsertPoints::default();
        let call = FaultRequest {
            id: 1,
            connection_id: 1,
            rpc: Rpc::Upsert,
            collection: Some("a"),
            message: &message,
            remote_addr: None,
            metadata: &metadata,
        };
        let status = faults.decide(&call).unwrap().to_status().unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "2");

        assert_eq!(
            ask(&faults, Rpc::Upsert, "b"),
            None,
            "each collection has a budget"
        );
        assert_eq!(
            ask(&faults, Rpc::Search, "a"),
            None,
            "only upserts are limited"
        );

        tokio::time::advance(SECOND).await;
        assert!(
            ask(&faults, Rpc::Upsert, "a").is_some(),
            "half a token is not enough"
        );
        tokio::time::advance(SECOND).await;
        assert_eq!(
            ask(&faults, Rpc::Upsert, "a"),
            None,
            "after retry-after it passes"
        );
        assert!(ask(&faults, Rpc::Upsert, "a").is_some());
    }

    #[test]
    fn a_trigger_can_be_set_explicitly() {
        let rule = FaultRule::new(Fault::hang()).trigger(Trigger::First(3));
        assert!(rule.fault().is_some_and(|fault| fault.code().is_none()));
        assert!(FaultRule::rate_limit(1, SECOND).fault().is_none());
    }
}
