//! The chaos acceptance suite: the ready stack (`QdrantStack`: deadline → retry → health gate
//! → breaker → attempt timeout → `QdrantService`) driven by concurrent readers and writers
//! through the testkit's chaos proxy and fault plans, and the invariants a user relies on
//! checked at the end of each scenario:
//!
//! | scenario | invariant |
//! |---|---|
//! | full outage at steady load | per breaker cycle the backend sees at most the trip threshold (plus the calls already in flight) or the half-open trials; all attempts ≤ 1.2 × calls + the retry budget's floor |
//! | rate limiting with `retry-after` | no attempt sooner than the hint after the one it answers |
//! | slow server, then a blackhole | no call outlives its deadline (each call measured) |
//! | crash and restart mid-write, apply-then-fail faults | every acknowledged write is there at the end (scrolled and compared); a non-idempotent call is sent once |
//! | flapping network | the breaker opens and closes and does not stick; no task or connection leaks |
//!
//! Each scenario prints one line: calls, successes, rejections, attempts, max call duration,
//! lost acknowledged writes. Everything runs in-process on loopback; each scenario takes a
//! few seconds of real time (the proxy and the server are real sockets).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qdrant_tower::layers::breaker::{BreakerConfig, BreakerState, StateChange};
use qdrant_tower::layers::retry::BudgetSettings;
use qdrant_tower::layers::{HealthConfig, RetryPolicy};
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointId, PointStruct, ScrollPointsBuilder, SearchPoints,
    SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder, point_id::PointIdOptions,
};
use qdrant_tower::{
    ErrorKind, Payload, QdrantService, QdrantStack, StackService, VectorError, VectorRequest,
    VectorResponse,
};
use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};
use qdrant_tower_testkit::{ChaosProxy, Direction, TestServer};
use tokio::time::Instant;
use tower::ServiceExt;

const COLLECTION: &str = "chaos";
/// Concurrent callers, each one call at a time.
const WORKERS: u64 = 8;
/// The pause between a caller's calls.
const PACE: Duration = Duration::from_millis(10);
/// Every `UPSERT_EVERY`th call of a caller writes a fresh point; the others search.
const UPSERT_EVERY: u64 = 4;
/// Each call's deadline, retries included.
const DEADLINE: Duration = Duration::from_millis(1500);
/// Each attempt's timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(400);
/// How late past its deadline a call may end: the deadline layer's timer, then the task's
/// wake-up on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(250);
/// The breaker under test: 5 failures in a row open it, 300 ms open, 3 half-open trials.
const TRIP: u32 = 5;
const TRIALS: u32 = 3;
/// The retry budget: 20 % of calls plus 10 a second over a 10 s window (the defaults).
const BUDGET: BudgetSettings = BudgetSettings {
    ttl: Duration::from_secs(10),
    min_per_sec: 10,
    retry_percent: 0.2,
};

/// The server, a proxy in front of it, and the ready stack pointed at the proxy.
struct Rig {
    server: TestServer,
    proxy: ChaosProxy,
    stack: QdrantStack,
    changes: Arc<Mutex<Vec<StateChange>>>,
    /// The task recording the breaker's changes.
    watcher: tokio::task::JoinHandle<()>,
    /// Tasks alive before the stack was built (the server's and the proxy's).
    tasks_without_stack: usize,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(HealthConfig::testing().with_interval(Duration::from_millis(100))).await
    }

    async fn start_with(health: HealthConfig) -> Rig {
        let server = TestServer::start()
            .await
            .expect("the embedded server starts");
        let direct = QdrantService::from_url(server.url()).expect("valid settings");
        direct
            .oneshot(
                CreateCollectionBuilder::new(COLLECTION)
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                    .into(),
            )
            .await
            .expect("collection created");
        let proxy = ChaosProxy::start(server.addr())
            .await
            .expect("the proxy starts");
        let tasks_without_stack = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let stack = QdrantStack::builder()
            .endpoint(proxy.url())
            .deadline(DEADLINE)
            .attempt_timeout(ATTEMPT_TIMEOUT)
            .retry(
                RetryPolicy::default()
                    .with_time_scale(0.2)
                    .with_budget(BUDGET),
            )
            .breaker(
                BreakerConfig::default()
                    .with_consecutive_failures(TRIP)
                    .with_half_open_trials(TRIALS)
                    .with_open_wait(Duration::from_millis(300)),
            )
            .health(
                health
                    .with_name("chaos")
                    .with_probe_timeout(Duration::from_millis(200)),
            )
            .build()
            .expect("the stack builds");
        let changes = Arc::new(Mutex::new(Vec::new()));
        let mut events = stack.breaker().subscribe();
        let log = Arc::clone(&changes);
        let watcher = tokio::spawn(async move {
            while let Ok(change) = events.recv().await {
                log.lock().unwrap().push(change);
            }
        });
        Rig {
            server,
            proxy,
            stack,
            changes,
            watcher,
            tasks_without_stack,
        }
    }

    /// The attempts of the workload that reached the server (health probes left out).
    fn attempts(&self) -> Vec<(Instant, Rpc)> {
        self.server
            .calls()
            .matching(|call| !call.is_health_probe() && call.collection() == Some(COLLECTION))
            .iter()
            .map(|call| (call.at(), call.rpc()))
            .collect()
    }

    /// Every point id in the collection, read straight from the server.
    async fn stored_ids(&self) -> HashSet<u64> {
        let direct = QdrantService::from_url(self.server.url()).expect("valid settings");
        let mut ids = HashSet::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut scroll = ScrollPointsBuilder::new(COLLECTION).limit(1000);
            if let Some(offset) = offset.take() {
                scroll = scroll.offset(offset);
            }
            let page = match direct.clone().oneshot(scroll.into()).await {
                Ok(VectorResponse::Scroll(page)) => page,
                other => panic!("a scroll of the collection: {other:?}"),
            };
            for point in page.result {
                if let Some(PointIdOptions::Num(id)) = point.id.and_then(|id| id.point_id_options) {
                    ids.insert(id);
                }
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return ids,
            }
        }
    }
}

/// What a workload saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    ok: u64,
    /// Refused without being sent: circuit open or unhealthy.
    rejected: u64,
    failed: BTreeMap<ErrorKind, u64>,
    max_call: Duration,
    /// The ids of the writes the stack acknowledged.
    acked: Vec<u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.calls += other.calls;
        self.ok += other.ok;
        self.rejected += other.rejected;
        for (kind, n) in other.failed {
            *self.failed.entry(kind).or_default() += n;
        }
        self.max_call = self.max_call.max(other.max_call);
        self.acked.extend(other.acked);
    }

    fn summary(&self, scenario: &str, attempts: usize, lost: usize) {
        println!(
            "chaos {scenario}: calls {}, successes {}, rejections {}, attempts {attempts}, \
             max call {:?}, lost acknowledged writes {lost}, failures {:?}",
            self.calls, self.ok, self.rejected, self.max_call, self.failed
        );
    }
}

/// The request a caller sends as its `seq`th call: a search naming its caller and number in
/// its vector (so the attempts of one call can be told apart in the server's log), or an
/// upsert of a fresh point.
fn request(worker: u64, seq: u64) -> (VectorRequest, Option<u64>) {
    if seq % UPSERT_EVERY == UPSERT_EVERY - 1 {
        let id = worker * 1_000_000 + seq;
        let point = PointStruct::new(id, vec![1.0, id as f32], Payload::new());
        let upsert = UpsertPointsBuilder::new(COLLECTION, vec![point]).wait(true);
        (upsert.into(), Some(id))
    } else {
        let tag = (worker * 1_000_000 + seq) as f32;
        let search = SearchPointsBuilder::new(COLLECTION, vec![1.0, tag], 3);
        (search.into(), None)
    }
}

/// The tag of a search `request` sent, from the server's record of it.
fn search_tag(search: &SearchPoints) -> u64 {
    search.vector.get(1).copied().unwrap_or_default() as u64
}

/// `WORKERS` callers for `length`, each measuring every call it makes.
async fn workload(service: StackService, length: Duration) -> Tally {
    let end = Instant::now() + length;
    let callers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut seq = 0;
                while Instant::now() < end {
                    let (request, write) = request(worker, seq);
                    seq += 1;
                    let started = Instant::now();
                    // Bounded far past the deadline: a hang fails the scenario, not CI.
                    let outcome =
                        tokio::time::timeout(DEADLINE * 4, service.clone().oneshot(request))
                            .await
                            .expect("no call hangs past four times its deadline");
                    tally.calls += 1;
                    tally.max_call = tally.max_call.max(started.elapsed());
                    match outcome {
                        Ok(response) => {
                            tally.ok += 1;
                            if let Some(id) = write {
                                assert!(response.is_fresh(), "no queue or fallback here");
                                tally.acked.push(id);
                            }
                        }
                        Err(error) => record_failure(&mut tally, &error),
                    }
                    tokio::time::sleep(PACE).await;
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for caller in callers {
        tally.add(caller.await.expect("a caller ends"));
    }
    tally
}

fn record_failure(tally: &mut Tally, error: &VectorError) {
    match error.kind() {
        ErrorKind::CircuitOpen | ErrorKind::Unhealthy => tally.rejected += 1,
        kind => *tally.failed.entry(kind).or_default() += 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outage_at_steady_load_is_contained_by_the_breaker_and_the_budget() {
    // No health gate in the way: the breaker alone must contain the outage.
    let rig =
        Rig::start_with(HealthConfig::testing().with_interval(Duration::from_secs(3600))).await;
    rig.server.set_faults(
        FaultPlan::new().rule(FaultRule::new(Fault::unavailable()).collection(COLLECTION)),
    );
    let length = Duration::from_secs(3);
    let tally = workload(rig.stack.service(), length).await;
    let attempts = rig.attempts();
    tally.summary("full outage", attempts.len(), 0);

    assert_eq!(tally.ok, 0, "nothing succeeds in an outage");
    assert!(
        tally.rejected > tally.calls / 2,
        "most calls are rejected unsent"
    );
    // Per breaker cycle: while Closed, the breaker admits at most the trip threshold plus the
    // calls already in flight (one per caller); after the first opening, only the half-open
    // trials of each cycle. Attempts are stamped when they reach the server, a moment after
    // the breaker admitted them, so an attempt admitted just before an opening can arrive just
    // after it: those still count against what Closed admitted, never against the trials. Per
    // window, the trials plus those stragglers; over the whole outage, exactly what Closed
    // admitted plus the trials.
    let changes = rig.changes.lock().unwrap().clone();
    let opens: Vec<Instant> = changes
        .iter()
        .filter(|c| c.to == BreakerState::Open)
        .map(|c| c.at)
        .collect();
    let half_opens = changes
        .iter()
        .filter(|c| c.to == BreakerState::HalfOpen)
        .count();
    assert!(
        opens.len() >= 2,
        "the breaker opened again after its trials: {changes:?}"
    );
    let closed_admits = (TRIP + WORKERS as u32) as usize;
    let before_first = attempts.iter().filter(|(at, _)| *at <= opens[0]).count();
    assert!(
        before_first <= closed_admits,
        "{before_first} attempts before the breaker first opened"
    );
    // Admitted while Closed but stamped after the first opening, at most.
    let late_closed = closed_admits - before_first;
    let mut windows = opens
        .windows(2)
        .map(|w| (w[0], Some(w[1])))
        .collect::<Vec<_>>();
    windows.push((opens[opens.len() - 1], None));
    for (n, (from, to)) in windows.into_iter().enumerate() {
        let seen = attempts
            .iter()
            .filter(|(at, _)| *at > from && to.is_none_or(|to| *at <= to))
            .count();
        let stragglers = if n == 0 { late_closed } else { 0 };
        assert!(
            seen < 2 * TRIALS as usize + stragglers,
            "{seen} attempts reached the backend between openings at {from:?} and {to:?}"
        );
    }
    let after_first = attempts.len() - before_first;
    assert!(
        after_first <= half_opens * TRIALS as usize + late_closed,
        "{after_first} attempts after the first opening ({before_first} before it), \
         {half_opens} half-open periods of {TRIALS} trials"
    );
    // All attempts within the retry budget's share of the calls plus its floor.
    let floor = BUDGET.min_per_sec as f64 * BUDGET.ttl.as_secs_f64().max(length.as_secs_f64());
    assert!(
        attempts.len() as f64 <= 1.2 * tally.calls as f64 + floor,
        "{} attempts for {} calls",
        attempts.len(),
        tally.calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_calls_wait_the_servers_retry_after() {
    let rig = Rig::start().await;
    // Every other search is refused with `retry-after: 1`.
    rig.server.set_faults(
        FaultPlan::new().rule(
            FaultRule::new(Fault::rate_limited(Duration::from_secs(1)))
                .rpc(Rpc::Search)
                .collection(COLLECTION)
                .every_nth(2),
        ),
    );
    let tally = workload(rig.stack.service(), Duration::from_secs(2)).await;
    let calls = rig
        .server
        .calls()
        .matching(|call| call.rpc() == Rpc::Search && call.collection() == Some(COLLECTION));
    tally.summary("rate limited", calls.len(), 0);
    // The attempts of each search, in order: one after a refusal comes at least the hint later.
    let mut by_call: HashMap<u64, Vec<(Instant, bool)>> = HashMap::new();
    for call in &calls {
        let search = call.message::<SearchPoints>().expect("a search message");
        by_call
            .entry(search_tag(search))
            .or_default()
            .push((call.at(), call.is_faulted()));
    }
    let mut retried = 0;
    for (tag, mut attempts) in by_call {
        attempts.sort_by_key(|(at, _)| *at);
        for pair in attempts.windows(2) {
            let ((first, refused), (next, _)) = (pair[0], pair[1]);
            assert!(
                refused,
                "search {tag}: retried after an attempt that was not refused"
            );
            retried += 1;
            assert!(
                next - first >= Duration::from_secs(1),
                "search {tag}: retried {:?} after a refusal asking for 1 s",
                next - first
            );
        }
    }
    assert!(retried > 0, "some refused searches were retried");
    assert!(tally.ok > 0, "searches get through at the server's rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_outlives_its_deadline_on_a_slow_server_or_a_blackhole() {
    let rig = Rig::start().await;
    // A slow server: a third of the calls answered after 2 s (past the attempt timeout).
    rig.server.set_faults(
        FaultPlan::new().rule(
            FaultRule::new(Fault::delay(Duration::from_secs(2)))
                .collection(COLLECTION)
                .every_nth(3),
        ),
    );
    let mut tally = workload(rig.stack.service(), Duration::from_millis(1500)).await;
    rig.server.clear_faults();
    // A blackhole: the proxy swallows everything, both ways.
    rig.proxy.blackhole(Direction::Upstream, true);
    rig.proxy.blackhole(Direction::Downstream, true);
    tally.add(workload(rig.stack.service(), Duration::from_millis(1500)).await);
    rig.proxy.clear();
    tally.summary("slow server and blackhole", rig.attempts().len(), 0);
    assert!(tally.ok > 0, "the fast calls succeed");
    // The slow calls time out, and once they have tripped the breaker, calls are rejected:
    // which of the two a call meets depends on timing, that it is one of them does not.
    assert!(
        tally.failed.contains_key(&ErrorKind::Timeout) || tally.rejected > 0,
        "slow calls end in timeouts or rejections: {:?}",
        tally.failed
    );
    assert!(
        tally.max_call <= DEADLINE + SLACK,
        "a call took {:?}, its deadline is {DEADLINE:?}",
        tally.max_call
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_crash_and_faults_that_apply_then_fail() {
    let rig = Rig::start().await;
    // Every third upsert is applied, then answered UNAVAILABLE (the retry sends it again).
    rig.server.set_faults(
        FaultPlan::new().rule(
            FaultRule::new(Fault::apply_then_unavailable())
                .rpc(Rpc::Upsert)
                .collection(COLLECTION)
                .every_nth(3),
        ),
    );
    let service = rig.stack.service();
    let load = tokio::spawn(workload(service, Duration::from_secs(3)));
    // A crash (no flush) and a restart on the same data, mid-load.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let handle = rig.server.handle();
    handle.crash().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle
        .restart()
        .await
        .expect("the server restarts on its data");
    let tally = load.await.expect("the workload ends");
    rig.server.clear_faults();

    let stored = rig.stored_ids().await;
    let lost: Vec<u64> = tally
        .acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    tally.summary(
        "crash and apply-then-fail",
        rig.attempts().len(),
        lost.len(),
    );
    assert!(
        tally.acked.len() > 20,
        "writes were acknowledged: {}",
        tally.acked.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Nothing the workload did not write: a retried upsert wrote its own point again, no other.
    let foreign: Vec<&u64> = stored
        .iter()
        .filter(|&&id| {
            id / 1_000_000 >= WORKERS || id % 1_000_000 % UPSERT_EVERY != UPSERT_EVERY - 1
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "points the workload never wrote: {foreign:?}"
    );

    // A non-idempotent call under the same fault is sent once and not retried.
    rig.server.set_faults(
        FaultPlan::new().rule(
            FaultRule::new(Fault::apply_then_unavailable())
                .rpc(Rpc::CreateCollection)
                .first(1),
        ),
    );
    let create = rig
        .stack
        .service()
        .oneshot(
            CreateCollectionBuilder::new("chaos_once")
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                .into(),
        )
        .await;
    let error = create.expect_err("applied, then answered UNAVAILABLE");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert_eq!(
        rig.server
            .calls()
            .count(Rpc::CreateCollection, "chaos_once"),
        1,
        "a collection creation is never sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_network_opens_and_closes_the_breaker_and_leaks_nothing() {
    let rig = Rig::start().await;
    let service = rig.stack.service();
    let load = tokio::spawn(workload(service, Duration::from_secs(3)));
    // Down 300 ms, up 300 ms, five times.
    for _ in 0..5 {
        rig.proxy.refuse(true).await.expect("refusing");
        rig.proxy.reset_all().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rig.proxy.refuse(false).await.expect("accepting");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut tally = load.await.expect("the workload ends");
    // Stable again: the breaker closes within its open wait and a probe, and stays closed.
    let settle = Instant::now() + Duration::from_secs(5);
    while rig.stack.breaker().state() != BreakerState::Closed {
        assert!(
            Instant::now() < settle,
            "the breaker sticks in {:?}",
            rig.stack.breaker().state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = workload(rig.stack.service(), Duration::from_millis(500)).await;
    assert_eq!(
        after.ok, after.calls,
        "all calls succeed once the network is stable"
    );
    tally.add(after);
    tally.summary("flapping network", rig.attempts().len(), 0);
    let changes = rig.changes.lock().unwrap().clone();
    let opened = changes
        .iter()
        .filter(|c| c.to == BreakerState::Open)
        .count();
    let closed = changes
        .iter()
        .filter(|c| c.to == BreakerState::Closed)
        .count();
    assert!(
        opened >= 1 && closed >= 1,
        "the breaker opened and closed: {changes:?}"
    );
    assert!(tally.ok > 0 && tally.rejected > 0);

    // No connection leaks: the stack holds at most its pool's connections (and the health
    // probes share them).
    let stats = rig.stack.pool_stats();
    let max = stats[0].max as u64;
    let open = rig.proxy.stats().open;
    assert!(
        open <= max,
        "{open} connections open through the proxy, the pool holds {max}"
    );
    // No task or connection leaks: with the stack gone, the tasks it started end (its
    // health prober, its pool's reaper — which sleeps up to 5 s between rounds — and the
    // connection tasks of the client, the proxy and the server for its connections).
    rig.watcher.abort();
    drop(rig.stack);
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = rig.tasks_without_stack;
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = metrics.num_alive_tasks();
        if alive <= before {
            break;
        }
        assert!(
            Instant::now() < settle,
            "{alive} tasks alive 10 s after the stack was dropped, {before} before it was built"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
