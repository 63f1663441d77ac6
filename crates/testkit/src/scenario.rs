//! Scenarios: a timeline of failure phases (healthy → outage → flapping → recovery …) played on
//! tokio's clock against a [`TestServer`](crate::TestServer)'s faults and a
//! [`ChaosProxy`].
//!
//! A [`Scenario`] is a list of [`Step`]s. Each step has a name, a duration and actions that run
//! when it starts: install a [`FaultPlan`] ([`Step::faults`]), clear it, change the proxy's
//! toxics ([`Step::proxy`]), refuse connections ([`Step::refuse`]), reset them
//! ([`Step::reset_connections`]), crash, stop or restart the server ([`Step::crash_server`],
//! [`Step::stop_server`], [`Step::restart_server`]), or anything else ([`Step::action`],
//! [`Step::action_async`]). [`Scenario::run`] plays the steps in order, each starting exactly
//! its predecessors' durations after the start (no drift), and returns when the last one has
//! lasted its time. It changes nothing on its own at the end: end with a recovery step that
//! clears what you set.
//!
//! Run it next to the workload under test (`tokio::join!` or a spawned task). On a paused clock
//! (`#[tokio::test(start_paused = true)]`) a 20 s scenario takes no real time; mind that tokio
//! then also fast-forwards while calls wait on loopback I/O.
//!
//! ```
//! use std::time::Duration;
//! use qdrant_tower_testkit::TestServer;
//! use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
//! use qdrant_tower_testkit::scenario::{Scenario, Step};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start().await?;
//! let faults = server.faults();
//! let ms = Duration::from_millis;
//!
//! let scenario = Scenario::new()
//!     .step(Step::new("healthy", ms(20)).clear_faults(&faults))
//!     .step(Step::new("outage", ms(30)).faults(&faults, FaultRule::new(Fault::unavailable())))
//!     .step(
//!         Step::new("flapping", ms(30))
//!             .faults(&faults, FaultRule::new(Fault::unavailable()).probability(0.5, 7)),
//!     )
//!     .step(Step::new("recovery", ms(20)).clear_faults(&faults));
//! assert_eq!(scenario.duration(), ms(100));
//!
//! let mut seen = Vec::new();
//! scenario.run_with(|step| seen.push(step.name().to_owned())).await;
//! assert_eq!(seen, ["healthy", "outage", "flapping", "recovery"]);
//! assert!(!faults.is_active());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::chaos::{ChaosProxy, Toxics};
use crate::faults::{FaultPlan, Faults};
use crate::server::ServerHandle;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type ActionFn = Arc<dyn Fn() -> BoxFuture + Send + Sync>;

/// One phase of a [`Scenario`]: a name, how long it lasts, and what to change when it starts.
///
/// Actions run in the order they were added, each finishing before the next starts; their run
/// time counts against the step's duration. A step can be cloned and reused (its actions are
/// shared), e.g. to alternate outage and recovery a few times.
#[derive(Clone)]
pub struct Step {
    name: String,
    duration: Duration,
    actions: Vec<ActionFn>,
}

impl Step {
    /// A step called `name` lasting `duration`, with no actions yet (a step without actions
    /// leaves everything as it was: "hold").
    pub fn new(name: impl Into<String>, duration: Duration) -> Self {
        Step {
            name: name.into(),
            duration,
            actions: Vec::new(),
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the step lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Runs `action` when the step starts.
    pub fn action<F>(self, action: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.action_async(move || {
            action();
            std::future::ready(())
        })
    }

    /// Runs the future `action` returns when the step starts, and waits for it.
    pub fn action_async<F, Fut>(mut self, action: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.actions
            .push(Arc::new(move || Box::pin(action()) as BoxFuture));
        self
    }

    /// Installs `plan` on the server behind `faults` (replacing its plan; windows start now).
    pub fn faults(self, faults: &Faults, plan: impl Into<FaultPlan>) -> Self {
        let faults = faults.clone();
        let plan = plan.into();
        self.action(move || faults.set(plan.clone()))
    }

    /// Removes the server's fault plan.
    pub fn clear_faults(self, faults: &Faults) -> Self {
        let faults = faults.clone();
        self.action(move || faults.clear())
    }

    /// Changes `proxy` with `change` (e.g. `|p| { p.latency(Direction::Both, ms(200), ms(50)); }`).
    pub fn proxy<F>(self, proxy: &ChaosProxy, change: F) -> Self
    where
        F: Fn(&ChaosProxy) + Send + Sync + 'static,
    {
        let proxy = proxy.clone();
        self.action(move || change(&proxy))
    }

    /// Replaces every effect of `proxy` with `toxics`.
    pub fn proxy_toxics(self, proxy: &ChaosProxy, toxics: Toxics) -> Self {
        let proxy = proxy.clone();
        self.action(move || {
            proxy.set(toxics.clone());
        })
    }

    /// Removes every effect of `proxy` and lets it accept connections again.
    pub fn clear_proxy(self, proxy: &ChaosProxy) -> Self {
        let proxy = proxy.clone();
        self.action_async(move || {
            let proxy = proxy.clone();
            async move {
                proxy.clear();
                if let Err(err) = proxy.refuse(false).await {
                    tracing::warn!(%err, "the chaos proxy could not listen again");
                }
            }
        })
    }

    /// Makes `proxy` refuse new connections (`true`) or accept them again (`false`).
    pub fn refuse(self, proxy: &ChaosProxy, refuse: bool) -> Self {
        let proxy = proxy.clone();
        self.action_async(move || {
            let proxy = proxy.clone();
            async move {
                if let Err(err) = proxy.refuse(refuse).await {
                    tracing::warn!(%err, refuse, "the chaos proxy could not change its listener");
                }
            }
        })
    }

    /// Resets every connection open through `proxy` now.
    pub fn reset_connections(self, proxy: &ChaosProxy) -> Self {
        let proxy = proxy.clone();
        self.action_async(move || {
            let proxy = proxy.clone();
            async move { proxy.reset_all().await }
        })
    }

    /// Crashes the server as [`ServerHandle::crash`] does: connections cut, no flush. Follow
    /// with a step that [`restart_server`](Self::restart_server)s it.
    pub fn crash_server(self, server: &ServerHandle) -> Self {
        let server = server.clone();
        self.action_async(move || {
            let server = server.clone();
            async move { server.crash().await }
        })
    }

    /// Stops the server gracefully, as [`ServerHandle::stop`] does.
    pub fn stop_server(self, server: &ServerHandle) -> Self {
        let server = server.clone();
        self.action_async(move || {
            let server = server.clone();
            async move { server.stop().await }
        })
    }

    /// Starts the server again on its address and data, as [`ServerHandle::restart`] does
    /// (after a crash, replaying the WAL). A failure (the port taken meanwhile) is logged.
    pub fn restart_server(self, server: &ServerHandle) -> Self {
        let server = server.clone();
        self.action_async(move || {
            let server = server.clone();
            async move {
                if let Err(err) = server.restart().await {
                    tracing::warn!(%err, "the test server could not restart");
                }
            }
        })
    }

    async fn start(&self) {
        for action in &self.actions {
            action().await;
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("duration", &self.duration)
            .field("actions", &self.actions.len())
            .finish()
    }
}

/// A timeline of [`Step`]s, played on tokio's clock by [`run`](Scenario::run). See the
/// [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    steps: Vec<Step>,
}

/// A step that has just started, as [`Scenario::run_with`] reports it.
#[derive(Debug)]
pub struct StepStarted<'a> {
    index: usize,
    step: &'a Step,
    at: Instant,
    offset: Duration,
}

impl StepStarted<'_> {
    /// The step's position, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.step.name
    }

    /// How long the step lasts.
    pub fn duration(&self) -> Duration {
        self.step.duration
    }

    /// When it started (tokio's clock), after its actions ran.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// When it was scheduled to start, counted from the scenario's start.
    pub fn offset(&self) -> Duration {
        self.offset
    }
}

impl Scenario {
    /// An empty scenario.
    pub fn new() -> Self {
        Scenario::default()
    }

    /// Adds `step` at the end.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds `steps`, in order, `times` times over (e.g. outage, recovery, outage, recovery…).
    pub fn repeat(mut self, times: usize, steps: &[Step]) -> Self {
        for _ in 0..times {
            self.steps.extend_from_slice(steps);
        }
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The sum of the steps' durations: how long [`run`](Self::run) takes.
    pub fn duration(&self) -> Duration {
        self.steps.iter().map(|step| step.duration).sum()
    }

    /// Plays the scenario: each step's actions at its start, then a sleep until the next one's
    /// (tokio's clock). Returns when the last step has lasted its duration.
    pub async fn run(&self) {
        self.run_with(|_| {}).await;
    }

    /// As [`run`](Self::run), calling `on_step` as each step starts (after its actions), e.g.
    /// to print the phase or note its start time.
    pub async fn run_with(&self, mut on_step: impl FnMut(&StepStarted<'_>)) {
        let start = Instant::now();
        let mut offset = Duration::ZERO;
        for (index, step) in self.steps.iter().enumerate() {
            step.start().await;
            on_step(&StepStarted {
                index,
                step,
                at: Instant::now(),
                offset,
            });
            offset += step.duration;
            tokio::time::sleep_until(start + offset).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::faults::{Fault, FaultRule};

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn steps_start_on_schedule_and_run_their_actions_in_order() {
        let faults = Faults::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let note = |what: &'static str| {
            let log = Arc::clone(&log);
            move || log.lock().unwrap().push(what)
        };
        let outage = Step::new("outage", 2 * SECOND)
            .faults(&faults, FaultRule::new(Fault::unavailable()))
            .action(note("down"));
        let recovery = Step::new("recovery", SECOND)
            .clear_faults(&faults)
            .action(note("up"));
        let scenario = Scenario::new()
            .step(Step::new("healthy", 3 * SECOND))
            .repeat(2, &[outage, recovery]);
        assert_eq!(scenario.steps().len(), 5);
        assert_eq!(scenario.duration(), 9 * SECOND);

        let start = Instant::now();
        let mut started = Vec::new();
        let mut active = Vec::new();
        scenario
            .run_with(|step| {
                started.push((step.name().to_owned(), step.at() - start, step.offset()));
                active.push(faults.is_active());
            })
            .await;

        assert_eq!(start.elapsed(), 9 * SECOND);
        let expected = [
            ("healthy", 0),
            ("outage", 3),
            ("recovery", 5),
            ("outage", 6),
            ("recovery", 8),
        ];
        for ((name, at, offset), (want, secs)) in started.iter().zip(expected) {
            assert_eq!(name, want);
            assert_eq!(*at, Duration::from_secs(secs));
            assert_eq!(*offset, Duration::from_secs(secs));
        }
        assert_eq!(active, [false, true, false, true, false]);
        assert_eq!(*log.lock().unwrap(), ["down", "up", "down", "up"]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_actions_do_not_shift_later_steps() {
        let scenario =
            Scenario::new()
                .step(Step::new("slow", 2 * SECOND).action_async(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }))
                .step(Step::new("next", SECOND));
        let start = Instant::now();
        let mut at = Vec::new();
        scenario.run_with(|step| at.push(step.at() - start)).await;
        assert_eq!(at, [Duration::from_millis(500), 2 * SECOND]);
        assert_eq!(start.elapsed(), 3 * SECOND);
    }
}
