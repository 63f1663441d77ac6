//! Chaos demo: a steady search-and-upsert workload through the whole recommended stack —
//! deadline → retry → health gate → circuit breaker → attempt timeout → `QdrantService` —
//! while the backend goes through a scripted ~17 s of trouble, printed live, second by second:
//! outcomes by `ErrorKind` as the caller sees them, the retries the retry layer made and the
//! ones its budget refused, the calls that actually reached the backend, the health check's
//! status and the breaker's state, with their transitions as they happen. A summary by step
//! follows, with the retries by the kind of failure they answered.
//!
//! Everything runs in-process on loopback: the testkit's embedded Qdrant-compatible server
//! (with fault injection), a `ChaosProxy` in front of it for the network faults, and the
//! client pointed at the proxy. The health check probes Qdrant's health-check RPC through the
//! same proxy, and moves the breaker to half-open as soon as it sees a recovery.
//!
//! ```text
//! cargo run --example chaos_demo
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qdrant_tower::layers::breaker::{Breaker, BreakerConfig, BreakerState};
use qdrant_tower::layers::health::{HealthCheck, HealthConfig, HealthGateLayer, HealthStatus};
use qdrant_tower::layers::retry::{
    BudgetSettings, KindPolicy, RetryBudget, RetryLayer, RetryPolicy,
};
use qdrant_tower::layers::{AttemptTimeoutLayer, DeadlineLayer};
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, GetPointsBuilder, PointId, PointStruct, SearchPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, QdrantService, VectorError, VectorRequest, VectorResponse};
use qdrant_tower_testkit::faults::{CallLog, Fault, FaultRule, Rpc};
use qdrant_tower_testkit::scenario::{Scenario, Step};
use qdrant_tower_testkit::{ChaosProxy, TestServer};
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Service, ServiceBuilder, ServiceExt};

const COLLECTION: &str = "chaos_demo";
/// Concurrent callers, each sending one call at a time, one every `PACE`.
const WORKERS: u64 = 4;
const PACE: Duration = Duration::from_millis(20);
/// Every 5th call of a worker is an upsert of a fresh point, the others are searches.
const UPSERT_EVERY: u64 = 5;
/// The whole call, retries included.
const DEADLINE: Duration = Duration::from_secs(2);
/// One attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// The columns of the live table, in order; any other kind is counted under "other".
const COLUMNS: [&str; 9] = [
    "ok",
    "unhealthy",
    "circuit_open",
    "unavailable",
    "rate_limited",
    "timeout",
    "connect",
    "internal",
    "other",
];

tokio::task_local! {
    /// The attempts of the call the current task is making, as the layer under the retry
    /// layer sees them.
    static ATTEMPTS: Arc<Mutex<Attempts>>;
}

/// One call's attempts: how many started, and the kinds of those that failed, in order.
#[derive(Default)]
struct Attempts {
    started: u32,
    failures: Vec<ErrorKind>,
}

/// Under the retry layer: counts each attempt as it starts.
fn count_attempt(request: VectorRequest) -> VectorRequest {
    let _ = ATTEMPTS.try_with(|attempts| attempts.lock().unwrap().started += 1);
    request
}

/// Under the retry layer: notes the kind of each failed attempt.
fn record_attempt(
    result: Result<VectorResponse, VectorError>,
) -> Result<VectorResponse, VectorError> {
    if let Err(error) = &result {
        let _ = ATTEMPTS.try_with(|attempts| attempts.lock().unwrap().failures.push(error.kind()));
    }
    result
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::start().await?;
    seed(&server).await?;
    let proxy = ChaosProxy::start(server.addr()).await?;
    // Opens on 5 failures in a row or half of the last 20 calls failing (10 at least); stays
    // open 1 s (demo scale), then lets 3 trial calls through; 2 successes close it.
    let breaker = Breaker::new(
        "qdrant",
        BreakerConfig::default()
            .with_consecutive_failures(5)
            .with_failure_rate(0.5)
            .with_count_window(20)
            .with_minimum_calls(10)
            .with_open_wait(Duration::from_secs(1)),
    )?;
    let backend = QdrantService::builder()
        .endpoint(proxy.url())
        .request_timeout(Some(ATTEMPT_TIMEOUT))
        .connect_timeout(Duration::from_millis(300))
        .build()?;
    // Probes Qdrant's health-check RPC through the proxy every 200 ms: 3 failures in a row →
    // unhealthy (calls rejected at once), 1 success → healthy (and the breaker half-open).
    let health = HealthCheck::for_service(
        HealthConfig::testing()
            .with_name("qdrant")
            .with_interval(Duration::from_millis(200))
            .with_probe_timeout(Duration::from_millis(200)),
        backend.clone(),
        VectorRequest::health_check(),
    )?;
    health.link_breaker(breaker.clone());
    // The default table at demo scale: the same kinds and attempts, shorter delays; a budget
    // of 10 % of calls plus 5 retries a second over a 2 s window (the default: 20 % plus 10 a
    // second over 10 s), so that its refusals show within a 2 s step.
    let ms = Duration::from_millis;
    let retry = RetryLayer::new(
        RetryPolicy::default()
            .with_budget(BudgetSettings {
                ttl: Duration::from_secs(2),
                min_per_sec: 5,
                retry_percent: 0.1,
            })
            .with_kind(
                ErrorKind::Connect,
                KindPolicy::exponential(3, ms(20), ms(200)),
            )
            .with_kind(
                ErrorKind::RateLimited,
                KindPolicy::exponential(5, ms(50), ms(500)),
            )
            .with_kind(
                ErrorKind::Unavailable,
                KindPolicy::exponential(3, ms(50), ms(500)),
            )
            .with_kind(ErrorKind::Timeout, KindPolicy::linear(2, ms(50), ms(100)))
            .with_kind(
                ErrorKind::Internal,
                KindPolicy::exponential(3, ms(20), ms(200)),
            ),
    )?;
    let budget = retry
        .budget()
        .expect("the default policy has a budget")
        .clone();
    let client = ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE))
        .layer(retry)
        .map_result(record_attempt)
        .map_request(count_attempt)
        .layer(HealthGateLayer::new(health.clone()))
        .layer(breaker.layer())
        .layer(AttemptTimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(backend);
    println!(
        "server {}, proxy {}, {WORKERS} callers x {} calls/s; deadline {DEADLINE:?}, attempt \
         timeout {ATTEMPT_TIMEOUT:?};\nretry: the default kinds and attempts at demo-scale delays, \
         budget 10% + 5/s; health: probe every 200 ms, 3 failures -> unhealthy;\nbreaker: 5 \
         failures in a row or 50% of 20 calls, open 1 s\n",
        server.addr(),
        proxy.addr(),
        1000 / PACE.as_millis()
    );

    let faults = server.faults();
    let s = Duration::from_secs;
    let scenario = Scenario::new()
        .step(Step::new("healthy", s(2)))
        .step(Step::new("outage", s(2)).faults(&faults, FaultRule::new(Fault::unavailable())))
        .step(Step::new("flapping", s(2)).faults(
            &faults,
            FaultRule::new(Fault::unavailable()).probability(0.5, 7),
        ))
        .step(
            // Strict mode: 40 calls per second per collection, bursts of 40.
            Step::new("rate limited", s(2)).faults(&faults, FaultRule::rate_limit(40, s(1))),
        )
        .step(
            // A third of the reads take longer than the client waits.
            Step::new("slow server", s(2)).faults(
                &faults,
                FaultRule::new(Fault::delay(Duration::from_millis(500)))
                    .reads()
                    .probability(0.3, 11),
            ),
        )
        .step(
            // Every 3rd write is applied, then its connection dropped: the caller cannot know.
            Step::new("lost answers", s(2)).faults(
                &faults,
                FaultRule::new(Fault::apply_then_drop())
                    .writes()
                    .every_nth(3),
            ),
        )
        .step(
            Step::new("partition", s(2))
                .clear_faults(&faults)
                .refuse(&proxy, true)
                .reset_connections(&proxy),
        )
        .step(
            Step::new("recovery", s(3))
                .clear_faults(&faults)
                .clear_proxy(&proxy),
        );

    // Workers, clock and scenario all start at the same instant, so that seconds and steps line
    // up; the margin lets the tasks get going first.
    let start = Instant::now() + Duration::from_millis(50);
    let stats = Arc::new(Stats::new(
        start,
        scenario.steps()[0].name(),
        server.calls(),
    ));
    let watcher = tokio::spawn(watch_breaker(breaker.clone(), Arc::clone(&stats)));
    let health_watcher = tokio::spawn(watch_health(health.clone(), Arc::clone(&stats)));
    let sampler = tokio::spawn(sample_budget(budget.clone(), Arc::clone(&stats)));
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1_000));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        workers.push(tokio::spawn(work(
            worker,
            client.clone(),
            Arc::clone(&stats),
            Arc::clone(&stop),
            Arc::clone(&next_id),
        )));
    }
    let printer = tokio::spawn(print_live(Arc::clone(&stats)));

    println!(
        "{}{:>9}{:>9}{:>9}  health     breaker",
        header("  t  step"),
        "retries",
        "refused",
        "backend"
    );
    tokio::time::sleep_until(start).await;
    scenario
        .run_with(|step| stats.set_step(step.index(), step.name()))
        .await;
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await?;
    }
    printer.abort();
    watcher.abort();
    health_watcher.abort();
    sampler.abort();
    stats.sample_refusals(budget.refusals());
    stats.print_rows_from(stats.printed.load(Ordering::Acquire));

    summary(&stats, &scenario);
    lost_writes(&server, &stats).await?;
    let calls = server.calls();
    let traffic = proxy.stats();
    let figures = breaker.snapshot();
    println!(
        "\nthe retry layer made {} retries and its budget refused {}; the health check ran {} \
         probes; the breaker let {} calls through and rejected {} without sending them ({} \
         transitions); the server saw {} calls ({} of them faulted); the proxy accepted {} \
         connections and reset {}",
        stats
            .inner
            .lock()
            .unwrap()
            .retries_by_second
            .values()
            .sum::<u64>(),
        budget.refusals(),
        health.snapshot().probes,
        figures.calls,
        figures.rejections,
        figures.transitions,
        calls.total(),
        calls.total_faulted(),
        traffic.accepted,
        traffic.reset
    );
    server.shutdown().await;
    Ok(())
}

/// Creates the collection and 200 points, straight to the server.
async fn seed(server: &TestServer) -> Result<(), VectorError> {
    let direct = QdrantService::builder()
        .endpoint(server.url())
        .build()
        .expect("valid settings");
    direct
        .clone()
        .oneshot(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine))
                .into(),
        )
        .await?;
    let points: Vec<_> = (0..200u64).map(|id| point(id, id)).collect();
    direct
        .oneshot(
            UpsertPointsBuilder::new(COLLECTION, points)
                .wait(true)
                .into(),
        )
        .await?;
    Ok(())
}

fn point(id: u64, seed: u64) -> PointStruct {
    let x = (seed % 17) as f32 / 17.0;
    PointStruct::new(id, vec![x, 1.0 - x, 0.5, 0.1], Payload::new())
}

/// One caller: a call every `PACE` (or as soon as the previous one ends, when it took longer),
/// until `stop`.
async fn work<S>(
    worker: u64,
    client: S,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
) where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError> + Clone,
{
    // Staggered, so that no call starts exactly on a step boundary, while the step changes.
    let offset = PACE * (worker as u32 + 1) / (WORKERS as u32 + 1);
    let mut pace = tokio::time::interval_at(stats.start + offset, PACE);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n = worker;
    while !stop.load(Ordering::Acquire) {
        pace.tick().await;
        n += 1;
        let upsert_id = n
            .is_multiple_of(UPSERT_EVERY)
            .then(|| next_id.fetch_add(1, Ordering::Relaxed));
        let request: VectorRequest = match upsert_id {
            Some(id) => UpsertPointsBuilder::new(COLLECTION, vec![point(id, n)])
                .wait(true)
                .into(),
            None => SearchPointsBuilder::new(COLLECTION, vec![0.3, 0.7, 0.5, 0.1], 5).into(),
        };
        // Booked under the second and the step in which the call started: the fault it met was
        // chosen when it arrived.
        let started = stats.now();
        let attempts = Arc::new(Mutex::new(Attempts::default()));
        let result = ATTEMPTS
            .scope(attempts.clone(), client.clone().oneshot(request))
            .await;
        // Each failed attempt was retried, but the last one of a call that failed with it
        // (a call cut by its deadline failed with the attempt in flight instead).
        let Attempts {
            started: n,
            mut failures,
        } = std::mem::take(&mut *attempts.lock().unwrap());
        if result.is_err() && failures.len() == n as usize {
            failures.pop();
        }
        stats.retried(&started, &failures);
        if let (Some(id), Err(error)) = (upsert_id, &result)
            && error.maybe_sent()
        {
            stats.ambiguous_write(id);
        }
        stats.record(started, result.as_ref().err().map(|error| error.kind()));
    }
}

/// Outcomes by second and by step.
struct Stats {
    start: Instant,
    /// Seconds already printed.
    printed: AtomicU64,
    /// What reached the server, with arrival times.
    calls: CallLog,
    inner: Mutex<Inner>,
}

/// When a call started: the second since the start, and the step (index and name).
type Started = (u64, usize, String);

#[derive(Default)]
struct Inner {
    step: (usize, String),
    /// (second, step index, step name) → column → count.
    seconds: BTreeMap<(u64, usize, String), BTreeMap<&'static str, u64>>,
    ambiguous_writes: Vec<u64>,
    /// Second → the breaker's transitions during it, and the state it ended in.
    transitions: BTreeMap<u64, (Vec<String>, BreakerState)>,
    /// Second → the health check's status changes during it, and the status it ended in.
    health: BTreeMap<u64, (Vec<String>, HealthStatus)>,
    /// Second (the call's start) → retries made.
    retries_by_second: BTreeMap<u64, u64>,
    /// Step → kind of the failure retried → retries.
    retries_by_step: BTreeMap<usize, BTreeMap<&'static str, u64>>,
    /// Second → the budget's refusals so far, sampled at its end.
    refusals_at: BTreeMap<u64, u64>,
}

impl Stats {
    fn new(start: Instant, first_step: &str, calls: CallLog) -> Self {
        Stats {
            start,
            printed: AtomicU64::new(0),
            calls,
            inner: Mutex::new(Inner {
                step: (0, first_step.to_owned()),
                ..Inner::default()
            }),
        }
    }

    fn now(&self) -> Started {
        let (index, name) = self.inner.lock().unwrap().step.clone();
        (self.start.elapsed().as_secs(), index, name)
    }

    fn set_step(&self, index: usize, name: &str) {
        self.inner.lock().unwrap().step = (index, name.to_owned());
    }

    fn record(&self, started: Started, kind: Option<ErrorKind>) {
        let column = match kind {
            None => "ok",
            Some(kind) => COLUMNS
                .iter()
                .copied()
                .find(|column| *column == kind.as_str())
                .unwrap_or("other"),
        };
        let mut inner = self.inner.lock().unwrap();
        *inner
            .seconds
            .entry(started)
            .or_default()
            .entry(column)
            .or_default() += 1;
    }

    fn retried(&self, started: &Started, failures: &[ErrorKind]) {
        let mut inner = self.inner.lock().unwrap();
        *inner.retries_by_second.entry(started.0).or_default() += failures.len() as u64;
        let by_kind = inner.retries_by_step.entry(started.1).or_default();
        for kind in failures {
            *by_kind.entry(kind.as_str()).or_default() += 1;
        }
    }

    fn health_change(&self, line: String, to: HealthStatus) {
        let second = self.start.elapsed().as_secs();
        let mut inner = self.inner.lock().unwrap();
        let entry = inner
            .health
            .entry(second)
            .or_insert_with(|| (Vec::new(), to));
        entry.0.push(line);
        entry.1 = to;
    }

    /// Notes the budget's refusals so far, as of the end of the current second.
    fn sample_refusals(&self, refusals: u64) {
        let second = self.start.elapsed().as_secs();
        self.inner
            .lock()
            .unwrap()
            .refusals_at
            .insert(second, refusals);
    }

    /// Refusals during `second`.
    fn refused_in(inner: &Inner, second: u64) -> u64 {
        let upto = |s: u64| {
            inner
                .refusals_at
                .range(..=s)
                .next_back()
                .map_or(0, |(_, n)| *n)
        };
        upto(second) - if second == 0 { 0 } else { upto(second - 1) }
    }

    fn transition(&self, line: String, to: BreakerState) {
        let second = self.start.elapsed().as_secs();
        let mut inner = self.inner.lock().unwrap();
        let entry = inner
            .transitions
            .entry(second)
            .or_insert_with(|| (Vec::new(), to));
        entry.0.push(line);
        entry.1 = to;
    }

    /// Searches and upserts that reached the server during `second`, by their arrival time.
    fn backend_calls(&self, second: u64) -> usize {
        let from = self.start + Duration::from_secs(second);
        let to = from + Duration::from_secs(1);
        [Rpc::Search, Rpc::Upsert]
            .into_iter()
            .flat_map(|rpc| self.calls.times(rpc, COLLECTION))
            .filter(|at| (from..to).contains(at))
            .count()
    }

    fn ambiguous_write(&self, id: u64) {
        self.inner.lock().unwrap().ambiguous_writes.push(id);
    }

    /// Prints the rows of every second from `first` on that has any.
    fn print_rows_from(&self, first: u64) {
        let last = self.inner.lock().unwrap().seconds.keys().map(|k| k.0).max();
        for second in first..=last.unwrap_or(0) {
            self.print_second(second);
        }
    }

    /// Prints the rows of `second` (one per step current during it), with what reached the
    /// backend and the breaker's state, then the breaker's transitions during it.
    fn print_second(&self, second: u64) {
        let backend = self.backend_calls(second);
        let inner = self.inner.lock().unwrap();
        // The state at the end of the second: the last transition up to then.
        let state = inner
            .transitions
            .range(..=second)
            .next_back()
            .map_or(BreakerState::Closed, |(_, (_, state))| *state);
        let health = inner
            .health
            .range(..=second)
            .next_back()
            .map_or(HealthStatus::Healthy, |(_, (_, status))| *status);
        let retries = inner.retries_by_second.get(&second).copied().unwrap_or(0);
        let refused = Stats::refused_in(&inner, second);
        let rows = inner
            .seconds
            .range((second, 0, String::new())..(second + 1, 0, String::new()));
        for ((_, _, name), counts) in rows {
            let first = format!("{:>3}s  {name}", second + 1);
            println!(
                "{}{retries:>9}{refused:>9}{backend:>9}  {:<10} {}",
                row(&first, counts),
                health.as_str(),
                state_name(state)
            );
        }
        let health_lines = inner.health.get(&second).into_iter().flat_map(|t| &t.0);
        let breaker_lines = inner
            .transitions
            .get(&second)
            .into_iter()
            .flat_map(|t| &t.0);
        for line in health_lines.chain(breaker_lines) {
            println!("       {line}");
        }
    }

    /// Totals per step, in step order.
    fn by_step(&self) -> BTreeMap<usize, (String, BTreeMap<&'static str, u64>)> {
        let inner = self.inner.lock().unwrap();
        let mut steps: BTreeMap<usize, (String, BTreeMap<&'static str, u64>)> = BTreeMap::new();
        for ((_, index, name), counts) in &inner.seconds {
            let entry = steps
                .entry(*index)
                .or_insert_with(|| (name.clone(), BTreeMap::new()));
            for (column, count) in counts {
                *entry.1.entry(column).or_default() += count;
            }
        }
        steps
    }
}

/// Prints each second's outcomes once per second, as soon as every call started in it has
/// ended (they all end within the deadline), until aborted.
async fn print_live(stats: Arc<Stats>) {
    let settle = DEADLINE + Duration::from_millis(100);
    let mut tick = tokio::time::interval_at(
        stats.start + Duration::from_secs(1) + settle,
        Duration::from_secs(1),
    );
    loop {
        tick.tick().await;
        let second = stats.printed.load(Ordering::Acquire);
        stats.print_second(second);
        stats.printed.store(second + 1, Ordering::Release);
    }
}

/// Prints each transition of the breaker under the second it happened in.
async fn watch_breaker(breaker: Breaker, stats: Arc<Stats>) {
    let mut changes = breaker.subscribe();
    while let Ok(change) = changes.recv().await {
        let line = format!(
            "breaker: {} -> {} ({:?})",
            state_name(change.from),
            state_name(change.to),
            change.reason
        );
        stats.transition(line, change.to);
    }
}

/// Prints each status change of the health check under the second it happened in.
async fn watch_health(health: HealthCheck, stats: Arc<Stats>) {
    let mut status = health.subscribe();
    while status.changed().await.is_ok() {
        let to = *status.borrow_and_update();
        let line = match health.snapshot().last_error {
            Some(error) if !to.is_healthy() => format!("health: {to} ({error})"),
            _ => format!("health: {to}"),
        };
        stats.health_change(line, to);
    }
}

/// Samples the retry budget's refusals at the end of every second.
async fn sample_budget(budget: RetryBudget, stats: Arc<Stats>) {
    let mut tick = tokio::time::interval_at(
        stats.start + Duration::from_millis(999),
        Duration::from_secs(1),
    );
    loop {
        tick.tick().await;
        stats.sample_refusals(budget.refusals());
    }
}

fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "OPEN",
        BreakerState::HalfOpen => "half-open",
        BreakerState::Disabled => "disabled",
        BreakerState::ForcedOpen => "forced open",
        _ => "other",
    }
}

fn header(first: &str) -> String {
    let mut line = format!("{first:<20}");
    for column in COLUMNS {
        line.push_str(&format!("{column:>13}"));
    }
    line
}

fn row(first: &str, counts: &BTreeMap<&'static str, u64>) -> String {
    let mut line = format!("{first:<20}");
    for column in COLUMNS {
        line.push_str(&format!("{:>13}", counts.get(column).copied().unwrap_or(0)));
    }
    line
}

fn summary(stats: &Stats, scenario: &Scenario) {
    println!("\nsummary by step (calls that started during the step):\n");
    println!("{}{:>10}{:>8}", header("step"), "calls", "ok %");
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (index, (name, counts)) in stats.by_step() {
        let calls: u64 = counts.values().sum();
        let ok = counts.get("ok").copied().unwrap_or(0);
        let duration = scenario.steps()[index].duration();
        println!(
            "{}{calls:>10}{:>7.0}%",
            row(&format!("{name} ({}s)", duration.as_secs()), &counts),
            100.0 * ok as f64 / calls.max(1) as f64
        );
        for (column, count) in counts {
            *total.entry(column).or_default() += count;
        }
    }
    let calls: u64 = total.values().sum();
    let ok = total.get("ok").copied().unwrap_or(0);
    println!(
        "{}{calls:>10}{:>7.0}%",
        row("all", &total),
        100.0 * ok as f64 / calls.max(1) as f64
    );

    println!("\nretries by step and by the kind of failure they answered:\n");
    let inner = stats.inner.lock().unwrap();
    for (index, step) in scenario.steps().iter().enumerate() {
        let by_kind = inner.retries_by_step.get(&index);
        let listed: Vec<String> = by_kind
            .into_iter()
            .flatten()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let listed = if listed.is_empty() {
            "none".to_owned()
        } else {
            listed.join(", ")
        };
        println!("  {:<14}{listed}", step.name());
    }
}

/// Of the upserts that failed but may have been sent, how many were in fact applied.
async fn lost_writes(server: &TestServer, stats: &Stats) -> Result<(), VectorError> {
    let ids = stats.inner.lock().unwrap().ambiguous_writes.clone();
    if ids.is_empty() {
        return Ok(());
    }
    let direct = QdrantService::builder()
        .endpoint(server.url())
        .build()
        .expect("valid settings");
    let request = GetPointsBuilder::new(
        COLLECTION,
        ids.iter().copied().map(PointId::from).collect::<Vec<_>>(),
    );
    let stored = match direct.oneshot(request.into()).await? {
        VectorResponse::Get(found) => found.result.len(),
        _ => 0,
    };
    println!(
        "\n{} upserts failed in a way that leaves open whether they were applied (maybe_sent); \
         {stored} of them were in fact applied",
        ids.len()
    );
    Ok(())
}
