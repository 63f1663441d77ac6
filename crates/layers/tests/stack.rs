//! The deadline, attempt-timeout and health-gate layers, alone and in the recommended stack
//! (deadline → retry → health gate → breaker → attempt timeout), on Tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qdrant_tower_layers::breaker::BreakerState;
use qdrant_tower_layers::health::HealthSnapshot;
use qdrant_tower_layers::retry::{Jitter, KindPolicy};
use qdrant_tower_layers::{
    AttemptTimedOut, AttemptTimeoutLayer, Breaker, BreakerConfig, CircuitOpen, Classify,
    DeadlineExceeded, DeadlineLayer, ErrorKind, HealthCheck, HealthConfig, HealthGateLayer,
    HealthStatus, RequestInfo, RetryLayer, RetryPolicy, Unhealthy,
};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

// ===== a request that carries its deadline, and one error type for every layer =====

#[derive(Debug, Clone)]
struct Req {
    idempotent: bool,
    deadline: Option<Instant>,
}

fn search() -> Req {
    Req {
        idempotent: true,
        deadline: None,
    }
}

impl RequestInfo for Req {
    fn operation(&self) -> &'static str {
        "search"
    }
    fn collection(&self) -> Option<&str> {
        Some("docs")
    }
    fn is_idempotent(&self) -> bool {
        self.idempotent
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}

#[derive(Debug, Clone, PartialEq)]
enum E {
    Backend(ErrorKind),
    Deadline(DeadlineExceeded),
    Attempt(AttemptTimedOut),
    Unhealthy(Unhealthy),
    Open(CircuitOpen),
}

impl Classify for E {
    fn kind(&self) -> ErrorKind {
        match self {
            E::Backend(k) => *k,
            E::Deadline(e) => e.kind(),
            E::Attempt(e) => e.kind(),
            E::Unhealthy(e) => e.kind(),
            E::Open(e) => e.kind(),
        }
    }
    fn maybe_sent(&self) -> bool {
        match self {
            E::Backend(_) => true,
            E::Deadline(e) => e.maybe_sent(),
            E::Attempt(e) => e.maybe_sent(),
            E::Unhealthy(e) => e.maybe_sent(),
            E::Open(e) => e.maybe_sent(),
        }
    }
}

macro_rules! from {
    ($($t:ident => $v:ident),*) => {$(impl From<$t> for E { fn from(e: $t) -> Self { E::$v(e) } })*};
}
from!(DeadlineExceeded => Deadline, AttemptTimedOut => Attempt, Unhealthy => Unhealthy, CircuitOpen => Open);

/// What a backend saw of each call: when it started and the deadline the request carried.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Calls>>);

/// When each call started, and the deadline its request carried.
type Calls = Vec<(Instant, Option<Instant>)>;

impl Seen {
    fn all(&self) -> Calls {
        self.0.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A backend that records each call, waits `latency`, then answers from `script` by call
/// number (the last entry repeats).
fn backend(
    seen: &Seen,
    latency: Duration,
    script: &'static [Result<(), ErrorKind>],
) -> impl Service<Req, Response = &'static str, Error = E, Future: Send> + Clone + Send + 'static {
    let seen = seen.clone();
    service_fn(move |req: Req| {
        let n = {
            let mut seen = seen.0.lock().unwrap();
            seen.push((Instant::now(), req.deadline));
            seen.len() - 1
        };
        let outcome = script[n.min(script.len() - 1)];
        async move {
            tokio::time::sleep(latency).await;
            outcome.map(|()| "hits").map_err(E::Backend)
        }
    })
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

async fn call<Svc: Service<Req, Error = E>>(svc: &mut Svc, req: Req) -> Result<Svc::Response, E> {
    svc.ready().await?.call(req).await
}

// ===== deadline =====

mod deadline {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_default_bounds_a_slow_call_and_travels_with_the_request() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(S(2)))
            .service(backend(&seen, S(5), &[Ok(())]));
        let start = Instant::now();
        let err = call(&mut svc, search()).await.unwrap_err();
        assert_eq!(start.elapsed(), S(2));
        let E::Deadline(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((e.deadline, e.attempts), (S(2), None));
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.maybe_sent());
        assert_eq!(seen.all(), vec![(start, Some(start + S(2)))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_deadline_wins_over_the_default_either_way() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(S(2)))
            .service(backend(&seen, S(3), &[Ok(())]));
        let start = Instant::now();
        let longer = Req {
            deadline: Some(start + S(4)),
            ..search()
        };
        assert_eq!(call(&mut svc, longer).await, Ok("hits"));
        let start = Instant::now();
        let shorter = Req {
            deadline: Some(start + MS(500)),
            ..search()
        };
        assert!(matches!(call(&mut svc, shorter).await, Err(E::Deadline(_))));
        assert_eq!(start.elapsed(), MS(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_sends_nothing() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(S(2)))
            .service(backend(&seen, MS(1), &[Ok(())]));
        let past = Req {
            deadline: Some(Instant::now()),
            ..search()
        };
        let err = call(&mut svc, past).await.unwrap_err();
        let E::Deadline(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.attempts, Some(0));
        assert!(!err.maybe_sent(), "nothing was sent");
        assert_eq!(seen.count(), 0);
    }
}

// ===== attempt timeout =====

mod attempt_timeout {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_times_out_as_a_timeout() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(AttemptTimeoutLayer::new(S(1)))
            .service(backend(&seen, S(3), &[Ok(())]));
        let start = Instant::now();
        let err = call(&mut svc, search()).await.unwrap_err();
        assert_eq!(start.elapsed(), S(1));
        assert_eq!(
            err,
            E::Attempt(AttemptTimedOut {
                limit: S(1),
                by_deadline: false
            })
        );
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.maybe_sent());
        assert_eq!(
            seen.all(),
            vec![(start, Some(start + S(1)))],
            "the limit is handed down"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearer_deadline_shrinks_the_attempt() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(AttemptTimeoutLayer::new(S(1)))
            .service(backend(&seen, S(3), &[Ok(())]));
        let start = Instant::now();
        let req = Req {
            deadline: Some(start + MS(300)),
            ..search()
        };
        let err = call(&mut svc, req).await.unwrap_err();
        assert_eq!(
            err,
            E::Attempt(AttemptTimedOut {
                limit: MS(300),
                by_deadline: true
            })
        );
        assert_eq!(seen.all(), vec![(start, Some(start + MS(300)))]);
        // A further deadline leaves the layer's own limit in charge.
        let req = Req {
            deadline: Some(Instant::now() + S(10)),
            ..search()
        };
        assert_eq!(
            call(&mut svc, req).await,
            Err(E::Attempt(AttemptTimedOut {
                limit: S(1),
                by_deadline: false
            }))
        );
    }

    /// The layers share one clock reading per `call` (`qdrant_tower_layers::clock`); a layer
    /// that waits before calling the next one must not hand it the reading from before its wait.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_behind_a_queue_starts_its_limit_when_it_starts() {
        let seen = Seen::default();
        let queue = tower::layer::layer_fn(|inner| {
            service_fn(move |req: Req| {
                let mut inner = Clone::clone(&inner);
                async move {
                    tokio::time::sleep(S(1)).await;
                    call(&mut inner, req).await
                }
            })
        });
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(S(10)))
            .layer(queue)
            .layer(AttemptTimeoutLayer::new(S(2)))
            .service(backend(&seen, Duration::ZERO, &[Ok(())]));
        let start = Instant::now();
        call(&mut svc, search()).await.unwrap();
        assert_eq!(
            seen.all(),
            vec![(start + S(1), Some(start + S(3)))],
            "two seconds from the attempt's start, after its second in the queue"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_attempt_passes_and_a_passed_deadline_sends_nothing() {
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(AttemptTimeoutLayer::new(S(1)))
            .service(backend(&seen, MS(10), &[Ok(())]));
        assert_eq!(call(&mut svc, search()).await, Ok("hits"));
        let past = Req {
            deadline: Some(Instant::now()),
            ..search()
        };
        let err = call(&mut svc, past).await.unwrap_err();
        assert_eq!(
            err,
            E::Attempt(AttemptTimedOut {
                limit: Duration::ZERO,
                by_deadline: true
            })
        );
        assert!(!err.maybe_sent());
        assert_eq!(seen.count(), 1);
    }
}

// ===== retry under a deadline =====

mod retry_with_deadline {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_attempt_shrinks_to_the_time_left_and_the_call_ends_at_the_deadline() {
        let seen = Seen::default();
        // Timeouts retried 5 times, 100 ms apart; each attempt 1 s at most; 2.5 s in all.
        let policy = RetryPolicy::default().without_budget().with_kind(
            ErrorKind::Timeout,
            KindPolicy::constant(5, MS(100)).with_jitter(Jitter::None),
        );
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(MS(2500)))
            .layer(RetryLayer::new(policy).unwrap())
            .layer(AttemptTimeoutLayer::new(S(1)))
            .service(backend(&seen, S(60), &[Ok(())]));
        let start = Instant::now();
        let err = call(&mut svc, search()).await.unwrap_err();
        assert!(start.elapsed() <= MS(2500), "{:?}", start.elapsed());
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let seen = seen.all();
        let starts: Vec<_> = seen.iter().map(|(at, _)| *at - start).collect();
        let limits: Vec<_> = seen.iter().map(|(at, d)| d.unwrap() - *at).collect();
        // Attempts at 0 and 1.1 s get 1 s each; the third, at 2.2 s, only the 300 ms left.
        assert_eq!(starts.len(), 3, "{starts:?}");
        assert_eq!(limits, vec![S(1), S(1), MS(300)]);
        assert!(seen.iter().all(|(_, d)| d.unwrap() <= start + MS(2500)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_deadline_alone_bounds_the_retries() {
        let seen = Seen::default();
        // Unavailable: 3 attempts, 1 s base exponential; the request allows 1.5 s.
        let policy = RetryPolicy::default().without_budget().with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(3, S(1)).with_jitter(Jitter::None),
        );
        let mut svc = ServiceBuilder::new()
            .layer(RetryLayer::new(policy).unwrap())
            .service(backend(&seen, MS(100), &[Err(ErrorKind::Unavailable)]));
        let start = Instant::now();
        let req = Req {
            deadline: Some(start + MS(1500)),
            ..search()
        };
        let err = call(&mut svc, req).await.unwrap_err();
        // 0–100 ms, then 1.1–1.2 s; a third attempt would start at 2.2 s, past the deadline:
        // the call ends with the backend's own error as soon as that is known.
        assert_eq!(err, E::Backend(ErrorKind::Unavailable));
        assert_eq!(seen.count(), 2);
        assert_eq!(start.elapsed(), MS(1200));
    }
}

// ===== health =====

/// A probe whose answers the test flips; counts its calls.
#[derive(Clone, Default)]
struct Probe {
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl Probe {
    fn run(
        &self,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
    + Send
    + 'static {
        let probe = self.clone();
        move || {
            probe.calls.fetch_add(1, SeqCst);
            let (down, hang) = (probe.down.load(SeqCst), probe.hang.load(SeqCst));
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                if down {
                    Err("connection refused".to_owned())
                } else {
                    Ok(())
                }
            })
        }
    }
}

use std::future::Future;

fn config() -> HealthConfig {
    HealthConfig::testing()
        .with_name("qdrant")
        .with_interval(S(1))
        .with_probe_timeout(MS(200))
        .with_unhealthy_after(3)
        .with_healthy_after(2)
}

/// Lets the prober run the probes due by now (paused clock: sleeping advances it).
async fn after(d: Duration) {
    tokio::time::sleep(d).await;
}

mod health {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn n_failures_in_a_row_make_it_unhealthy_and_m_successes_healthy() {
        let probe = Probe::default();
        let check = HealthCheck::spawn(config(), probe.run()).unwrap();
        let mut status = check.subscribe();
        assert_eq!(check.status(), HealthStatus::Healthy, "starts healthy");
        after(MS(10)).await; // the first probe runs at once
        assert_eq!(probe.calls.load(SeqCst), 1);

        probe.down.store(true, SeqCst);
        after(S(2)).await; // probes at 1 s and 2 s fail: 2 of 3
        assert_eq!(check.status(), HealthStatus::Healthy);
        after(S(1)).await; // the third
        assert_eq!(check.status(), HealthStatus::Unhealthy);
        assert!(status.has_changed().unwrap());
        assert_eq!(*status.borrow_and_update(), HealthStatus::Unhealthy);
        let snap: HealthSnapshot = check.snapshot();
        assert_eq!((snap.consecutive_failures, snap.probes), (3, 4));
        assert_eq!(snap.last_error.as_deref(), Some("connection refused"));

        probe.down.store(false, SeqCst);
        after(S(1)).await; // one success of the two needed
        assert_eq!(check.status(), HealthStatus::Unhealthy);
        after(S(1)).await;
        assert_eq!(check.status(), HealthStatus::Healthy);
        assert_eq!(*status.borrow_and_update(), HealthStatus::Healthy);
        assert_eq!(check.snapshot().consecutive_successes, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconfigured_check_probes_by_its_new_interval_and_thresholds() {
        let probe = Probe::default();
        let check = HealthCheck::spawn(config(), probe.run()).unwrap();
        after(MS(10)).await;
        assert_eq!(probe.calls.load(SeqCst), 1);
        after(S(3)).await; // every second: at 1, 2 and 3 s
        assert_eq!(probe.calls.load(SeqCst), 4);

        check
            .reconfigure(config().with_interval(S(5)).with_unhealthy_after(1))
            .unwrap();
        assert_eq!(check.config().name(), "qdrant", "the name stays");
        after(S(1)).await; // the probe at 4 s was already scheduled; the new interval follows it
        assert_eq!(probe.calls.load(SeqCst), 5);
        after(S(4)).await; // nothing at 5..8 s
        assert_eq!(probe.calls.load(SeqCst), 5);
        after(S(1)).await; // 9 s
        assert_eq!(probe.calls.load(SeqCst), 6);
        probe.down.store(true, SeqCst);
        after(S(5)).await; // one failure is now enough
        assert_eq!(probe.calls.load(SeqCst), 7);
        assert_eq!(check.status(), HealthStatus::Unhealthy);

        // A bad configuration changes nothing.
        assert!(check.reconfigure(config().with_interval(S(0))).is_err());
        assert_eq!(check.config().interval(), S(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_hangs_fails_at_its_timeout() {
        let probe = Probe::default();
        probe.hang.store(true, SeqCst);
        let check = HealthCheck::spawn(config().with_unhealthy_after(1), probe.run()).unwrap();
        after(MS(199)).await;
        assert_eq!(check.status(), HealthStatus::Healthy);
        after(MS(2)).await;
        assert_eq!(check.status(), HealthStatus::Unhealthy);
        let error = check.snapshot().last_error.unwrap();
        assert!(error.contains("200ms"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_gate_fails_fast_without_calling_the_backend() {
        let probe = Probe::default();
        probe.down.store(true, SeqCst);
        let check = HealthCheck::spawn(config().with_unhealthy_after(1), probe.run()).unwrap();
        after(MS(10)).await;
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(HealthGateLayer::new(check.clone()))
            .service(backend(&seen, MS(1), &[Ok(())]));
        let start = Instant::now();
        let err = call(&mut svc, search()).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(
            err,
            E::Unhealthy(Unhealthy {
                name: "qdrant".into(),
                failed_probes: 1,
                waited: Duration::ZERO
            })
        );
        assert!(!err.maybe_sent() && !err.kind().is_transient());
        assert_eq!(seen.count(), 0);
        // Healthy again: calls pass.
        probe.down.store(false, SeqCst);
        after(S(2)).await;
        assert_eq!(call(&mut svc, search()).await, Ok("hits"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_gate_passes_on_recovery_within_its_bound() {
        let probe = Probe::default();
        probe.down.store(true, SeqCst);
        let cfg = config()
            .with_unhealthy_after(1)
            .with_healthy_after(1)
            .with_wait_for_recovery(S(3));
        let check = HealthCheck::spawn(cfg, probe.run()).unwrap();
        after(MS(10)).await;
        assert_eq!(check.status(), HealthStatus::Unhealthy);
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(HealthGateLayer::new(check.clone()))
            .service(backend(&seen, MS(1), &[Ok(())]));
        let up = probe.down.clone();
        tokio::spawn(async move {
            tokio::time::sleep(MS(1500)).await;
            up.store(false, SeqCst);
        });
        let start = Instant::now();
        assert_eq!(call(&mut svc, search()).await, Ok("hits"));
        // Recovered at the probe after 1.5 s: the one at 2 s.
        assert_eq!(start.elapsed(), MS(1991));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_gate_rejects_when_its_bound_ends() {
        let probe = Probe::default();
        probe.down.store(true, SeqCst);
        let cfg = config()
            .with_unhealthy_after(1)
            .with_wait_for_recovery(MS(700));
        let check = HealthCheck::spawn(cfg, probe.run()).unwrap();
        after(MS(10)).await;
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(HealthGateLayer::new(check))
            .service(backend(&seen, MS(1), &[Ok(())]));
        let start = Instant::now();
        let err = call(&mut svc, search()).await.unwrap_err();
        assert_eq!(start.elapsed(), MS(700));
        let E::Unhealthy(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.waited, MS(700));
        assert!(e.to_string().contains("after waiting 700ms"), "{e}");
        assert_eq!(seen.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovery_moves_linked_breakers_to_half_open_at_once() {
        let probe = Probe::default();
        let check = HealthCheck::spawn(
            config().with_unhealthy_after(1).with_healthy_after(1),
            probe.run(),
        )
        .unwrap();
        let breaker = Breaker::new(
            "qdrant",
            BreakerConfig::default()
                .with_consecutive_failures(2)
                .with_open_wait(S(60)),
        )
        .unwrap();
        check.link_breaker(breaker.clone());
        check.link_breaker(breaker.clone()); // linked once
        let seen = Seen::default();
        let mut svc = ServiceBuilder::new()
            .layer(breaker.layer())
            .service(backend(&seen, MS(1), &[Err(ErrorKind::Unavailable)]));
        for _ in 0..2 {
            let _ = call(&mut svc, search()).await;
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        probe.down.store(true, SeqCst);
        after(S(1)).await;
        assert_eq!(check.status(), HealthStatus::Unhealthy);
        assert_eq!(breaker.state(), BreakerState::Open);
        probe.down.store(false, SeqCst);
        after(S(1)).await;
        assert_eq!(check.status(), HealthStatus::Healthy);
        assert_eq!(breaker.state(), BreakerState::HalfOpen, "not 58 s later");
    }

    #[tokio::test(start_paused = true)]
    async fn the_prober_stops_when_the_last_handle_drops() {
        let probe = Probe::default();
        let check = HealthCheck::spawn(config(), probe.run()).unwrap();
        let gate =
            HealthGateLayer::new(check.clone()).layer(backend(&Seen::default(), MS(1), &[Ok(())]));
        after(MS(2500)).await;
        assert_eq!(probe.calls.load(SeqCst), 3);
        drop(check);
        after(S(2)).await;
        assert_eq!(probe.calls.load(SeqCst), 5, "a gate still holds the check");
        drop(gate);
        after(MS(10)).await;
        // The task ended and dropped its probe (and the probe's clone of `calls`).
        assert_eq!(Arc::strong_count(&probe.calls), 1);
        after(S(5)).await;
        assert_eq!(probe.calls.load(SeqCst), 5);
    }

    #[test]
    fn bad_settings_and_no_runtime_are_named() {
        let err = HealthCheck::spawn(
            config().with_interval(Duration::ZERO),
            Probe::default().run(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");
        let err = HealthCheck::spawn(config(), Probe::default().run()).unwrap_err();
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    use tower::Layer;
}

// ===== the whole stack =====

mod whole_stack {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_retry_health_breaker_timeout_compose_with_service_builder() {
        let probe = Probe::default();
        let check = HealthCheck::spawn(config(), probe.run()).unwrap();
        let breaker = Breaker::new("qdrant", BreakerConfig::default()).unwrap();
        check.link_breaker(breaker.clone());
        let seen = Seen::default();
        let policy = RetryPolicy::default().without_budget().with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(3, MS(100)).with_jitter(Jitter::None),
        );
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(S(5)))
            .layer(RetryLayer::new(policy).unwrap())
            .layer(HealthGateLayer::new(check.clone()))
            .layer(breaker.layer())
            .layer(AttemptTimeoutLayer::new(S(1)))
            .service(backend(
                &seen,
                MS(10),
                &[
                    Err(ErrorKind::Unavailable),
                    Err(ErrorKind::Unavailable),
                    Ok(()),
                ],
            ));
        let start = Instant::now();
        assert_eq!(call(&mut svc, search()).await, Ok("hits"));
        assert_eq!(seen.count(), 3);
        assert_eq!(start.elapsed(), MS(230));
        // Every attempt carried the 1 s attempt limit, inside the 5 s deadline.
        assert!(seen.all().iter().all(|(at, d)| d.unwrap() - *at == S(1)));
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);

        // Unhealthy: rejected at the gate, not retried, nothing sent.
        probe.down.store(true, SeqCst);
        after(S(3)).await;
        let err = call(&mut svc, search()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unhealthy);
        assert_eq!(seen.count(), 3);
    }
}

// ===== the policy under tower's own Retry =====

mod tower_retry {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tower_retry_with_our_policy_makes_the_same_decisions() {
        let policy = RetryPolicy::default().without_budget().with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(3, MS(100)).with_jitter(Jitter::None),
        );
        let layer = RetryLayer::new(policy).unwrap();
        let seen = Seen::default();
        let mut svc = tower::retry::Retry::new(
            layer.tower_policy(),
            backend(
                &seen,
                MS(10),
                &[
                    Err(ErrorKind::Unavailable),
                    Err(ErrorKind::Unavailable),
                    Ok(()),
                ],
            ),
        );
        let start = Instant::now();
        assert_eq!(call(&mut svc, search()).await, Ok("hits"));
        assert_eq!((seen.count(), start.elapsed()), (3, MS(230)));

        // Not transient: one attempt.
        let seen = Seen::default();
        let mut svc = tower::retry::Retry::new(
            layer.tower_policy(),
            backend(&seen, MS(10), &[Err(ErrorKind::InvalidRequest)]),
        );
        assert_eq!(
            call(&mut svc, search()).await,
            Err(E::Backend(ErrorKind::InvalidRequest))
        );
        assert_eq!(seen.count(), 1);

        // A retry that would start past the request's deadline is not made.
        let seen = Seen::default();
        let mut svc = tower::retry::Retry::new(
            layer.tower_policy(),
            backend(&seen, MS(10), &[Err(ErrorKind::Unavailable)]),
        );
        let req = Req {
            deadline: Some(Instant::now() + MS(150)),
            ..search()
        };
        assert_eq!(
            call(&mut svc, req).await,
            Err(E::Backend(ErrorKind::Unavailable))
        );
        assert_eq!(seen.count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn tower_retry_with_our_policy_draws_on_the_budget() {
        // No deposits beyond the first call: the floor (1 retry/s over 1 s) allows one retry.
        let policy = RetryPolicy::default()
            .with_budget(qdrant_tower_layers::retry::BudgetSettings {
                ttl: S(1),
                min_per_sec: 1,
                retry_percent: 0.0,
            })
            .with_kind(
                ErrorKind::Unavailable,
                KindPolicy::constant(5, MS(1)).with_jitter(Jitter::None),
            );
        let layer = RetryLayer::new(policy).unwrap();
        let seen = Seen::default();
        let mut svc = tower::retry::Retry::new(
            layer.tower_policy(),
            backend(&seen, MS(1), &[Err(ErrorKind::Unavailable)]),
        );
        assert!(call(&mut svc, search()).await.is_err());
        assert_eq!(
            seen.count(),
            2,
            "one retry from the floor, then the budget refuses"
        );
        assert_eq!(layer.budget().unwrap().refusals(), 1);
    }
}
