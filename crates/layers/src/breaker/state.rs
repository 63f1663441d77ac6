//! The state machine shared by every service of one breaker.
//!
//! # Layout
//! One `AtomicU64`, the *word*, holds everything the call path decides on:
//!
//! ```text
//!  63        48 47        32 31          8 7   3 2   0
//! [    b:16    |    a:16    | generation:24 | --- |state]
//! ```
//! - `state`: a [`BreakerState`];
//! - `generation`: bumped by every transition, so an outcome reported by a call admitted
//!   under an earlier state (a slow call finishing after the breaker opened, a trial of a
//!   previous half-open period) is recognised as stale and ignored;
//! - `a`: in closed and metrics-only states the consecutive-failure streak; in half-open the
//!   trial permits taken;
//! - `b`: in half-open the successful trials.
//!
//! The call path only loads the word (closed), or updates `a`/`b` with a compare-and-swap
//! (failure streaks, half-open permits). State changes take the `cold` mutex, which
//! serialises them, so between the check of the expected state and the compare-and-swap only
//! the counters can move. Figures for snapshots sit in their own cache line of relaxed
//! counters; configuration sits behind an `ArcSwap` read only off the fast path (the few bits
//! the fast path needs are mirrored in `flags`).

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::config::{BreakerConfig, MAX_COUNTER, Window};
use super::error::{CircuitOpen, ConfigError};
use super::observe::Metrics;
use super::snapshot::{BreakerSnapshot, TimeInState, WindowSnapshot};
use super::window::{CountWindow, Counts, TimeWindow};
use crate::Classify;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted and may open the breaker.
    Closed = 0,
    /// Calls are rejected until the open wait ends.
    Open = 1,
    /// A bounded number of trial calls go through to test the backend; the rest are rejected.
    HalfOpen = 2,
    /// Calls go through and nothing is counted: the breaker is switched off.
    Disabled = 3,
    /// An operator forced the breaker open: every call is rejected until a reset.
    ForcedOpen = 4,
    /// Calls go through and are counted, but the breaker never opens: for trying a
    /// configuration out on live traffic.
    MetricsOnly = 5,
}

impl BreakerState {
    /// Every state, in declaration order.
    pub const ALL: [BreakerState; 6] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::Disabled,
        BreakerState::ForcedOpen,
        BreakerState::MetricsOnly,
    ];

    /// A short, stable, snake_case name, for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Disabled => "disabled",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::MetricsOnly => "metrics_only",
        }
    }

    /// Whether every call goes through in this state (closed, disabled, metrics-only).
    pub const fn lets_all_through(self) -> bool {
        matches!(
            self,
            BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly
        )
    }

    const fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            3 => BreakerState::Disabled,
            4 => BreakerState::ForcedOpen,
            _ => BreakerState::MetricsOnly,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The breaker was just built (the initial value of [`Breaker::watch`](super::Breaker::watch)).
    Created,
    /// Too many counted failures in a row.
    ConsecutiveFailures,
    /// The failure rate in the window reached its threshold.
    FailureRate,
    /// The slow-call rate in the window reached its threshold.
    SlowCallRate,
    /// A call arrived after the open wait ended.
    OpenWaitElapsed,
    /// The open wait ended and the timer moved the breaker on.
    Timer,
    /// [`Breaker::try_half_open`](super::Breaker::try_half_open) was called, typically by a
    /// health prober that saw the backend recover.
    Requested,
    /// Enough trial calls succeeded.
    TrialsSucceeded,
    /// A trial call failed.
    TrialFailed,
    /// A trial call succeeded, but slower than the slow-call threshold.
    TrialSlow,
    /// [`Breaker::reset`](super::Breaker::reset).
    Reset,
    /// [`Breaker::force_open`](super::Breaker::force_open).
    ForcedOpen,
    /// [`Breaker::disable`](super::Breaker::disable).
    Disabled,
    /// [`Breaker::metrics_only`](super::Breaker::metrics_only).
    MetricsOnly,
}

impl TransitionReason {
    /// A short, stable, snake_case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransitionReason::Created => "created",
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::SlowCallRate => "slow_call_rate",
            TransitionReason::OpenWaitElapsed => "open_wait_elapsed",
            TransitionReason::Timer => "timer",
            TransitionReason::Requested => "requested",
            TransitionReason::TrialsSucceeded => "trials_succeeded",
            TransitionReason::TrialFailed => "trial_failed",
            TransitionReason::TrialSlow => "trial_slow",
            TransitionReason::Reset => "reset",
            TransitionReason::ForcedOpen => "forced_open",
            TransitionReason::Disabled => "disabled",
            TransitionReason::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of a breaker's state, as published to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// When (on Tokio's clock, so paused-clock tests see exact times).
    pub at: Instant,
}

// ===== the packed word =====

const STATE_MASK: u64 = 0x7;
const GEN_SHIFT: u32 = 8;
const GEN_MASK: u32 = 0x00FF_FFFF;
const A_SHIFT: u32 = 32;
const B_SHIFT: u32 = 48;
const COUNTER_MASK: u64 = 0xFFFF;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    const fn new(state: BreakerState, generation: u32, a: u32, b: u32) -> Self {
        Word(
            state as u64
                | ((generation & GEN_MASK) as u64) << GEN_SHIFT
                | (a as u64 & COUNTER_MASK) << A_SHIFT
                | (b as u64 & COUNTER_MASK) << B_SHIFT,
        )
    }
    #[inline]
    pub(crate) const fn state(self) -> BreakerState {
        BreakerState::from_bits(self.0)
    }
    #[inline]
    pub(crate) const fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32 & GEN_MASK
    }
    #[inline]
    const fn a(self) -> u32 {
        ((self.0 >> A_SHIFT) & COUNTER_MASK) as u32
    }
    #[inline]
    const fn b(self) -> u32 {
        ((self.0 >> B_SHIFT) & COUNTER_MASK) as u32
    }
    const fn with_a(self, a: u32) -> Self {
        Word(self.0 & !(COUNTER_MASK << A_SHIFT) | (a as u64 & COUNTER_MASK) << A_SHIFT)
    }
    const fn with_b(self, b: u32) -> Self {
        Word(self.0 & !(COUNTER_MASK << B_SHIFT) | (b as u64 & COUNTER_MASK) << B_SHIFT)
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("a", &self.a())
            .field("b", &self.b())
            .finish()
    }
}

// ===== flags mirrored from the configuration for the fast path =====

/// A slow-call policy is on: read the clock when a call starts and ends.
const F_SLOW: u32 = 1;
/// A rate policy is on: record every outcome in the window.
const F_WINDOW: u32 = 2;
/// A failure predicate replaces the error kind's verdict.
const F_PREDICATE: u32 = 4;
/// `poll_ready` waits instead of failing fast.
const F_BACKPRESSURE: u32 = 8;

fn flags_of(config: &BreakerConfig) -> u32 {
    let mut flags = 0;
    if config.slow_calls.is_some() {
        flags |= F_SLOW;
    }
    if config.uses_window() {
        flags |= F_WINDOW;
    }
    if config.predicate.is_some() {
        flags |= F_PREDICATE;
    }
    if config.backpressure {
        flags |= F_BACKPRESSURE;
    }
    flags
}

// ===== configuration and window, swapped together =====

pub(crate) enum WindowImpl {
    Count(CountWindow),
    Time(TimeWindow),
}

impl WindowImpl {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => WindowImpl::Count(CountWindow::new(n)),
            Window::Time { length, buckets } => WindowImpl::Time(TimeWindow::new(
                u64::try_from(length.as_nanos()).unwrap_or(u64::MAX),
                buckets,
            )),
        }
    }

    fn fits(&self, window: Window) -> bool {
        match (self, window) {
            (WindowImpl::Count(w), Window::Count(n)) => w.size() == n,
            (WindowImpl::Time(w), Window::Time { .. }) => {
                let WindowImpl::Time(fresh) = WindowImpl::new(window) else {
                    return false;
                };
                w.shape() == fresh.shape()
            }
            _ => false,
        }
    }

    fn record(&self, now: impl FnOnce() -> u64, failure: bool, slow: bool) {
        match self {
            WindowImpl::Count(w) => w.record(failure, slow),
            WindowImpl::Time(w) => w.record(now(), failure, slow),
        }
    }

    fn counts(&self, now: impl FnOnce() -> u64) -> Counts {
        match self {
            WindowImpl::Count(w) => w.counts(),
            WindowImpl::Time(w) => w.counts(now()),
        }
    }

    fn clear(&self) {
        match self {
            WindowImpl::Count(w) => w.clear(),
            WindowImpl::Time(w) => w.clear(),
        }
    }
}

pub(crate) struct Settings {
    pub config: BreakerConfig,
    window: Option<Arc<WindowImpl>>,
}

impl Settings {
    /// Keeps the previous window (and what it holds) when its shape is unchanged.
    fn build(config: BreakerConfig, previous: Option<&Settings>) -> Self {
        let window = config.uses_window().then(|| {
            previous
                .and_then(|p| p.window.as_ref())
                .filter(|w| w.fits(config.window))
                .cloned()
                .unwrap_or_else(|| Arc::new(WindowImpl::new(config.window)))
        });
        Settings { config, window }
    }
}

// ===== the shared breaker =====

/// What `call` reads on every request. Its own cache line, apart from the counters that
/// every completion writes.
#[repr(align(64))]
struct Hot {
    word: AtomicU64,
    flags: AtomicU32,
    slow_nanos: AtomicU64,
    /// When the current open period ends, in nanoseconds since `origin`. Written before the
    /// word that publishes the open state, under the transition lock.
    open_until: AtomicU64,
}

/// When the last success and failure ended: nanoseconds since `origin`, plus one (0: never).
#[repr(align(64))]
#[derive(Default)]
struct Stamps {
    last_success: AtomicU64,
    last_failure: AtomicU64,
}

/// Counters of the calls made from one group of threads.
#[derive(Default)]
struct LaneStats {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    slow: AtomicU64,
    rejections: AtomicU64,
}

/// One stripe of a breaker, for one group of threads.
///
/// Every admitted call holds an `Arc<Lane>` and writes its outcome to the lane's counters, so
/// calls from different threads do not fight over one reference count and one counter's
/// cache line: under contention the only shared access left on the closed path is the load of
/// the state word. Aligned so that two lanes never share a cache line.
#[repr(align(64))]
pub(crate) struct Lane {
    pub(crate) shared: Arc<Shared>,
    stats: LaneStats,
}

/// A breaker's lanes (a power of two of them), shared by its handles and services.
pub(crate) type Lanes = Arc<[Arc<Lane>]>;

/// How many lanes a breaker has: the machine's parallelism, at most 16, as a power of two.
fn lane_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16)
            .next_power_of_two()
    })
}

/// This thread's lane number (threads are numbered round-robin on first use).
#[inline]
fn lane_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed);
            index.set(i);
        }
        i
    })
}

/// This thread's lane.
#[inline]
pub(crate) fn lane(lanes: &Lanes) -> &Arc<Lane> {
    &lanes[lane_index() & (lanes.len() - 1)]
}

pub(crate) fn lanes_for(shared: &Arc<Shared>) -> Lanes {
    (0..lane_count())
        .map(|_| {
            Arc::new(Lane {
                shared: shared.clone(),
                stats: LaneStats::default(),
            })
        })
        .collect()
}

struct Cold {
    since: Instant,
    time_in: [Duration; BreakerState::ALL.len()],
    transitions: u64,
    /// Openings since the breaker last closed, for the exponential open wait.
    reopens: u32,
    rng: u64,
}

/// How often a success on the fast path samples the clock for `last_success`.
const SUCCESS_SAMPLE: u64 = 64;

pub(crate) struct Shared {
    hot: Hot,
    stamps: Stamps,
    settings: ArcSwap<Settings>,
    cold: Mutex<Cold>,
    waiters: Mutex<Vec<Waker>>,
    pub(crate) name: Arc<str>,
    pub(crate) tag: Option<Arc<str>>,
    origin: Instant,
    metrics: Metrics,
    changes: watch::Sender<StateChange>,
    events: broadcast::Sender<StateChange>,
}

/// What `poll_ready` learns from the breaker.
pub(crate) enum Gate {
    /// Calls go through (closed, disabled, metrics-only) in the state of this word.
    Pass(Word),
    /// A half-open trial permit, held until the call ends.
    Trial(Guard),
    /// Rejected.
    Reject(CircuitOpen),
}

pub(crate) enum Expect {
    Exactly(BreakerState, u32),
    Any,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// An error that does not count against the breaker.
    Ignored,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// xorshift64*, uniform in [0, 1).
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        tag: Option<Arc<str>>,
        config: BreakerConfig,
    ) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let now = Instant::now();
        let flags = flags_of(&config);
        let slow = config.slow_calls.map_or(0, |(d, _)| nanos_of(d));
        let metrics = Metrics::register(&name);
        metrics.initial(BreakerState::Closed);
        let created = StateChange {
            from: BreakerState::Closed,
            to: BreakerState::Closed,
            reason: TransitionReason::Created,
            at: now,
        };
        let seed = RandomState::new().hash_one((&*name, now)) | 1;
        Ok(Arc::new(Shared {
            hot: Hot {
                word: AtomicU64::new(Word::new(BreakerState::Closed, 0, 0, 0).0),
                flags: AtomicU32::new(flags),
                slow_nanos: AtomicU64::new(slow),
                open_until: AtomicU64::new(0),
            },
            stamps: Stamps::default(),
            settings: ArcSwap::from_pointee(Settings::build(config, None)),
            cold: Mutex::new(Cold {
                since: now,
                time_in: [Duration::ZERO; BreakerState::ALL.len()],
                transitions: 0,
                reopens: 0,
                rng: seed,
            }),
            waiters: Mutex::new(Vec::new()),
            name,
            tag,
            origin: now,
            metrics,
            changes: watch::Sender::new(created),
            events: broadcast::Sender::new(64),
        }))
    }

    #[inline]
    fn word(&self) -> Word {
        Word(self.hot.word.load(Acquire))
    }

    #[inline]
    fn flags(&self) -> u32 {
        self.hot.flags.load(Relaxed)
    }

    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        nanos_of(t.saturating_duration_since(self.origin))
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.word().state()
    }

    pub(crate) fn backpressure(&self) -> bool {
        self.flags() & F_BACKPRESSURE != 0
    }

    pub(crate) fn config(&self) -> BreakerConfig {
        self.settings.load().config.clone()
    }

    fn open_error(&self, retry_in: Option<Duration>) -> CircuitOpen {
        CircuitOpen {
            name: self.name.clone(),
            retry_in,
        }
    }

    // ----- admission -----

    /// The decision `poll_ready` needs: whether to poll the inner service at all. Closed: one
    /// atomic load.
    #[inline]
    pub(crate) fn gate(self: &Arc<Self>, lanes: &Lanes) -> Gate {
        let w = self.word();
        if w.state().lets_all_through() {
            Gate::Pass(w)
        } else {
            self.gate_slow(w, lanes)
        }
    }

    /// Admits one call about to be sent: a guard that reports its outcome (none when
    /// disabled), or the rejection. Closed: one atomic load and one reference count increment.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>, lanes: &Lanes) -> Result<Option<Guard>, CircuitOpen> {
        let mut w = self.word();
        if !w.state().lets_all_through() {
            match self.gate_slow(w, lanes) {
                Gate::Pass(now) => w = now,
                Gate::Trial(mut guard) => {
                    guard.mark_called();
                    return Ok(Some(guard));
                }
                Gate::Reject(open) => return Err(open),
            }
        }
        if w.state() == BreakerState::Disabled {
            Ok(None)
        } else {
            // Built whole, already marked sent: see `Guard::bits`.
            let start = if self.flags() & F_SLOW != 0 {
                self.nanos(Instant::now()) + 1
            } else {
                0
            };
            Ok(Some(Guard {
                lane: lane(lanes).clone(),
                start,
                bits: u64::from(w.generation()) | G_CALLED,
            }))
        }
    }

    #[cold]
    #[inline(never)]
    fn gate_slow(self: &Arc<Self>, mut w: Word, lanes: &Lanes) -> Gate {
        loop {
            match w.state() {
                BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly => {
                    return Gate::Pass(w);
                }
                BreakerState::ForcedOpen => return Gate::Reject(self.open_error(None)),
                BreakerState::Open => {
                    let now = self.nanos(Instant::now());
                    let until = self.hot.open_until.load(Acquire);
                    if now < until {
                        return Gate::Reject(
                            self.open_error(Some(Duration::from_nanos(until - now))),
                        );
                    }
                    self.transition(
                        Expect::Exactly(BreakerState::Open, w.generation()),
                        BreakerState::HalfOpen,
                        TransitionReason::OpenWaitElapsed,
                    );
                    w = self.word();
                }
                BreakerState::HalfOpen => {
                    let trials = self.settings.load().config.half_open_trials;
                    if w.a() >= trials {
                        return Gate::Reject(self.open_error(None));
                    }
                    let taken = w.with_a(w.a() + 1);
                    match self
                        .hot
                        .word
                        .compare_exchange_weak(w.0, taken.0, AcqRel, Acquire)
                    {
                        Ok(_) => {
                            let lane = lane(lanes).clone();
                            return Gate::Trial(Guard::new(lane, w.generation(), true));
                        }
                        Err(actual) => w = Word(actual),
                    }
                }
            }
        }
    }

    /// Counts a rejection the service returned to its caller.
    #[inline]
    pub(crate) fn count_rejection(&self, lanes: &Lanes) {
        lane(lanes).stats.rejections.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
    }

    // ----- outcomes -----

    fn classify<E: Classify>(&self, error: &E) -> Outcome {
        let counts = if self.flags() & F_PREDICATE != 0 {
            match &self.settings.load().config.predicate {
                Some(predicate) => predicate(error),
                None => error.kind().counts_as_failure(),
            }
        } else {
            error.kind().counts_as_failure()
        };
        if counts {
            Outcome::Failure
        } else {
            Outcome::Ignored
        }
    }

    #[inline]
    fn record(self: &Arc<Self>, guard: &Guard, outcome: Outcome) {
        if outcome == Outcome::Success && !guard.trial() && self.flags() & (F_SLOW | F_WINDOW) == 0
        {
            // The closed-state fast path: one counter of this thread's lane, one load, no clock.
            let n = guard.lane.stats.successes.fetch_add(1, Relaxed);
            self.metrics.success.increment(1);
            let w = self.word();
            if w.a() != 0 || n.is_multiple_of(SUCCESS_SAMPLE) {
                self.success_after_failures(guard.generation(), w);
            }
            return;
        }
        self.record_slow(guard, outcome);
    }

    /// A fast-path success that ends a failure streak (or samples the clock).
    #[cold]
    #[inline(never)]
    fn success_after_failures(&self, generation: u32, w: Word) {
        self.stamps
            .last_success
            .store(self.nanos(Instant::now()) + 1, Relaxed);
        if w.a() != 0 {
            self.reset_streak(generation);
        }
    }

    #[inline(never)]
    fn record_slow(self: &Arc<Self>, guard: &Guard, outcome: Outcome) {
        let mut now = None;
        let slow = match guard.start {
            0 => false,
            start => {
                let end = Instant::now();
                now = Some(end);
                // `start` is one more than the nanoseconds since `origin`.
                self.nanos(end).saturating_sub(start - 1) > self.hot.slow_nanos.load(Relaxed)
            }
        };
        let stats = &guard.lane.stats;
        let streak = self.word().a();
        match outcome {
            Outcome::Success => {
                let n = stats.successes.fetch_add(1, Relaxed);
                self.metrics.success.increment(1);
                // As on the fast path, the clock is read for this stamp only when it was read
                // anyway, for the first success after a failure, or every 64th success.
                if now.is_some() || streak != 0 || n.is_multiple_of(SUCCESS_SAMPLE) {
                    let at = self.nanos(*now.get_or_insert_with(Instant::now)) + 1;
                    self.stamps.last_success.store(at, Relaxed);
                }
            }
            Outcome::Failure => {
                stats.failures.fetch_add(1, Relaxed);
                self.metrics.failure.increment(1);
                let at = self.nanos(*now.get_or_insert_with(Instant::now)) + 1;
                self.stamps.last_failure.store(at, Relaxed);
            }
            Outcome::Ignored => {
                stats.ignored.fetch_add(1, Relaxed);
                self.metrics.ignored.increment(1);
            }
        }
        let mut now = move || *now.get_or_insert_with(Instant::now);
        if slow {
            stats.slow.fetch_add(1, Relaxed);
            self.metrics.slow.increment(1);
        }

        let w = self.word();
        if w.generation() != guard.generation() {
            return; // admitted under an earlier state: figures only
        }
        match w.state() {
            BreakerState::HalfOpen if guard.trial() => self.trial_outcome(w, outcome, slow),
            BreakerState::Closed | BreakerState::MetricsOnly if !guard.trial() => {
                self.closed_outcome(w, outcome, slow, &mut now)
            }
            _ => {}
        }
    }

    fn closed_outcome(
        self: &Arc<Self>,
        w: Word,
        outcome: Outcome,
        slow: bool,
        now: &mut impl FnMut() -> Instant,
    ) {
        if outcome == Outcome::Ignored {
            return; // neither the streak nor the window sees errors that do not count
        }
        let generation = w.generation();
        let trips = w.state() == BreakerState::Closed;
        let failure = outcome == Outcome::Failure;
        let settings = self.settings.load();
        let config = &settings.config;
        if failure {
            let streak = self.bump_streak(generation);
            if trips
                && let (Some(streak), Some(limit)) = (streak, config.consecutive_failures)
                && streak >= limit
            {
                self.transition(
                    Expect::Exactly(BreakerState::Closed, generation),
                    BreakerState::Open,
                    TransitionReason::ConsecutiveFailures,
                );
                return;
            }
        } else {
            self.reset_streak(generation);
        }
        let Some(window) = &settings.window else {
            return;
        };
        window.record(|| self.nanos(now()), failure, slow);
        if !trips {
            return;
        }
        let counts = window.counts(|| self.nanos(now()));
        if counts.calls < u64::from(config.minimum_calls) {
            return;
        }
        // In a count window only a recorded call moves the rates, and a plain success never
        // raises them: once the window held the minimum before this call, the previous
        // call's check already covered a state at least as bad. (A time window's rates also
        // move as old buckets expire, so it is checked on every call.)
        if !failure
            && !slow
            && matches!(**window, WindowImpl::Count(_))
            && counts.calls > u64::from(config.minimum_calls)
        {
            return;
        }
        let calls = counts.calls as f64;
        let reason = if config
            .failure_rate
            .is_some_and(|limit| counts.failures as f64 / calls >= limit)
        {
            TransitionReason::FailureRate
        } else if config
            .slow_calls
            .is_some_and(|(_, limit)| counts.slow as f64 / calls >= limit)
        {
            TransitionReason::SlowCallRate
        } else {
            return;
        };
        self.transition(
            Expect::Exactly(BreakerState::Closed, generation),
            BreakerState::Open,
            reason,
        );
    }

    fn trial_outcome(self: &Arc<Self>, w: Word, outcome: Outcome, slow: bool) {
        let generation = w.generation();
        let reopen = |reason| {
            self.transition(
                Expect::Exactly(BreakerState::HalfOpen, generation),
                BreakerState::Open,
                reason,
            );
        };
        match outcome {
            Outcome::Failure => reopen(TransitionReason::TrialFailed),
            Outcome::Success if slow => reopen(TransitionReason::TrialSlow),
            Outcome::Ignored => self.release_permit(generation),
            Outcome::Success => {
                let needed = self.settings.load().config.half_open_successes;
                let updated = self.hot.word.fetch_update(AcqRel, Acquire, |raw| {
                    let w = Word(raw);
                    (w.state() == BreakerState::HalfOpen && w.generation() == generation)
                        .then(|| w.with_b((w.b() + 1).min(MAX_COUNTER)).0)
                });
                if let Ok(before) = updated
                    && Word(before).b() + 1 >= needed
                {
                    self.transition(
                        Expect::Exactly(BreakerState::HalfOpen, generation),
                        BreakerState::Closed,
                        TransitionReason::TrialsSucceeded,
                    );
                }
            }
        }
    }

    /// Gives back a half-open permit whose call will not report (cancelled, not counted).
    fn release_permit(&self, generation: u32) {
        let released = self.hot.word.fetch_update(AcqRel, Acquire, |raw| {
            let w = Word(raw);
            (w.state() == BreakerState::HalfOpen && w.generation() == generation && w.a() > 0)
                .then(|| w.with_a(w.a() - 1).0)
        });
        if released.is_ok() {
            self.wake_waiters();
        }
    }

    /// A guard dropped before its call finished.
    fn abandon(&self, guard: &Guard) {
        if guard.called() {
            guard.lane.stats.cancelled.fetch_add(1, Relaxed);
            self.metrics.cancelled.increment(1);
        }
        if guard.trial() {
            self.release_permit(guard.generation());
        }
    }

    fn bump_streak(&self, generation: u32) -> Option<u32> {
        self.hot
            .word
            .fetch_update(AcqRel, Acquire, |raw| {
                let w = Word(raw);
                (w.generation() == generation && w.state().lets_all_through())
                    .then(|| w.with_a((w.a() + 1).min(MAX_COUNTER)).0)
            })
            .ok()
            .map(|before| (Word(before).a() + 1).min(MAX_COUNTER))
    }

    fn reset_streak(&self, generation: u32) {
        let _ = self.hot.word.fetch_update(AcqRel, Acquire, |raw| {
            let w = Word(raw);
            (w.generation() == generation && w.a() != 0).then(|| w.with_a(0).0)
        });
    }

    // ----- transitions -----

    /// Moves to `to` if the breaker is in the `expect`ed state and generation. Returns whether
    /// it moved. Entering a state resets the counters of the word; entering closed or
    /// metrics-only also clears the window.
    pub(crate) fn transition(
        self: &Arc<Self>,
        expect: Expect,
        to: BreakerState,
        reason: TransitionReason,
    ) -> bool {
        let mut cold = lock(&self.cold);
        let settings = self.settings.load();
        let now = Instant::now();
        let now_nanos = self.nanos(now);
        let mut rng = cold.rng;
        let wait = (to == BreakerState::Open).then(|| {
            let base = settings.config.open_wait.base(cold.reopens);
            let jitter = settings.config.jitter;
            if jitter > 0.0 {
                base.mul_f64(1.0 - jitter * next_unit(&mut rng))
            } else {
                base
            }
        });
        let mut current = self.word();
        let next = loop {
            if let Expect::Exactly(state, generation) = expect
                && (current.state() != state || current.generation() != generation)
            {
                return false;
            }
            let next = Word::new(to, current.generation().wrapping_add(1), 0, 0);
            if let Some(wait) = wait {
                // Published by the compare-and-swap below (Release).
                let until = now_nanos.saturating_add(nanos_of(wait));
                self.hot.open_until.store(until, Relaxed);
            }
            // Only the counters can move under our feet: every state change holds `cold`.
            match self
                .hot
                .word
                .compare_exchange(current.0, next.0, AcqRel, Acquire)
            {
                Ok(_) => break next,
                Err(actual) => current = Word(actual),
            }
        };
        let from = current.state();
        cold.rng = rng;
        let elapsed = now.saturating_duration_since(cold.since);
        cold.time_in[from as usize] += elapsed;
        cold.since = now;
        match to {
            BreakerState::Open => cold.reopens = cold.reopens.saturating_add(1),
            BreakerState::HalfOpen | BreakerState::ForcedOpen => {}
            BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly => {
                cold.reopens = 0
            }
        }
        if matches!(to, BreakerState::Closed | BreakerState::MetricsOnly)
            && let Some(window) = &settings.window
        {
            window.clear();
        }
        if from != to {
            cold.transitions += 1;
            self.metrics.transition(from, to);
            if matches!(to, BreakerState::Open | BreakerState::ForcedOpen) {
                tracing::warn!(breaker = %self.name, %from, %to, %reason, "circuit breaker state changed");
            } else {
                tracing::info!(breaker = %self.name, %from, %to, %reason, "circuit breaker state changed");
            }
            let change = StateChange {
                from,
                to,
                reason,
                at: now,
            };
            self.changes.send_replace(change);
            let _ = self.events.send(change); // no subscribers is fine
        }
        let auto = settings.config.auto_half_open;
        drop(cold);
        self.wake_waiters();
        if let (Some(wait), true) = (wait, auto) {
            self.spawn_half_open_timer(next.generation(), now + wait);
        }
        true
    }

    fn spawn_half_open_timer(self: &Arc<Self>, generation: u32, deadline: Instant) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the next call after the wait moves the breaker on
        };
        let breaker = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(breaker) = breaker.upgrade() {
                breaker.transition(
                    Expect::Exactly(BreakerState::Open, generation),
                    BreakerState::HalfOpen,
                    TransitionReason::Timer,
                );
            }
        });
    }

    /// Open → half-open now, if open. For health probers.
    pub(crate) fn try_half_open(self: &Arc<Self>) -> bool {
        let w = self.word();
        w.state() == BreakerState::Open
            && self.transition(
                Expect::Exactly(BreakerState::Open, w.generation()),
                BreakerState::HalfOpen,
                TransitionReason::Requested,
            )
    }

    pub(crate) fn force(self: &Arc<Self>, to: BreakerState, reason: TransitionReason) {
        self.transition(Expect::Any, to, reason);
    }

    pub(crate) fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        // Serialised with transitions, so a window is never cleared while it is replaced.
        let _cold = lock(&self.cold);
        let flags = flags_of(&config);
        let slow = config.slow_calls.map_or(0, |(d, _)| nanos_of(d));
        let previous = self.settings.load_full();
        self.settings
            .store(Arc::new(Settings::build(config, Some(&previous))));
        self.hot.slow_nanos.store(slow, Relaxed);
        self.hot.flags.store(flags, Release);
        drop(_cold);
        self.wake_waiters(); // backpressure may have been switched off
        Ok(())
    }

    // ----- waiting (backpressure) -----

    /// Registers a task to wake at the next state change or returned permit. The caller must
    /// check the state again after registering.
    pub(crate) fn register_waiter(&self, waker: &Waker) {
        let mut waiters = lock(&self.waiters);
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for waker in waiters {
            waker.wake();
        }
    }

    // ----- observation -----

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.events.subscribe()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<StateChange> {
        self.changes.subscribe()
    }

    pub(crate) fn snapshot(&self, lanes: &Lanes) -> BreakerSnapshot {
        let cold = lock(&self.cold);
        let settings = self.settings.load();
        let now = Instant::now();
        let now_nanos = self.nanos(now);
        let w = self.word();
        let state = w.state();
        let load = |a: &AtomicU64| a.load(Relaxed);
        let sum = |field: fn(&LaneStats) -> &AtomicU64| -> u64 {
            lanes.iter().map(|lane| load(field(&lane.stats))).sum()
        };
        let successes = sum(|s| &s.successes);
        let failures = sum(|s| &s.failures);
        let ignored = sum(|s| &s.ignored);
        let cancelled = sum(|s| &s.cancelled);
        let rejections = sum(|s| &s.rejections);
        let calls = successes + failures + ignored + cancelled;
        let mut time_in = cold.time_in;
        time_in[state as usize] += now.saturating_duration_since(cold.since);
        let at = |raw: u64| (raw != 0).then(|| self.instant(raw - 1));
        let window = settings.window.as_ref().map(|window| {
            let counts = window.counts(|| now_nanos);
            let rate = |n: u64| {
                if counts.calls == 0 {
                    0.0
                } else {
                    n as f64 / counts.calls as f64
                }
            };
            WindowSnapshot {
                calls: counts.calls,
                failures: counts.failures,
                slow_calls: counts.slow,
                failure_rate: rate(counts.failures),
                slow_call_rate: rate(counts.slow),
            }
        });
        let (streak, trials, trial_successes) = match state {
            BreakerState::HalfOpen => (0, w.a(), w.b()),
            BreakerState::Closed | BreakerState::MetricsOnly => (w.a(), 0, 0),
            _ => (0, 0, 0),
        };
        BreakerSnapshot {
            name: self.name.clone(),
            tag: self.tag.clone(),
            state,
            calls,
            successes,
            failures,
            ignored,
            cancelled,
            slow_calls: sum(|s| &s.slow),
            rejections,
            consecutive_failures: streak,
            half_open_trials: trials,
            half_open_successes: trial_successes,
            window,
            availability: if calls + rejections == 0 {
                1.0
            } else {
                calls as f64 / (calls + rejections) as f64
            },
            time_in_state: TimeInState::from_array(time_in),
            time_until_half_open: (state == BreakerState::Open).then(|| {
                Duration::from_nanos(self.hot.open_until.load(Acquire).saturating_sub(now_nanos))
            }),
            last_failure: at(load(&self.stamps.last_failure)),
            last_success: at(load(&self.stamps.last_success)),
            transitions: cold.transitions,
            taken_at: now,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("word", &self.word())
            .finish_non_exhaustive()
    }
}

// ===== the per-call guard =====

/// One admitted call's ticket: reports the outcome when the call ends and, if the call is
/// dropped first, gives a half-open permit back from `Drop`, so that cancelled trials never
/// leave the breaker stuck in half-open.
///
/// Kept to 24 bytes: it is moved with every response future.
pub(crate) struct Guard {
    lane: Arc<Lane>,
    /// When the call was sent, in nanoseconds since the breaker's origin plus one; 0 when no
    /// slow-call policy needs it.
    start: u64,
    /// The generation admitted under (low 32 bits) and the `G_*` flags. One word rather than
    /// a `u32` and three `bool`s: written piecemeal and moved whole, small fields stall store
    /// forwarding on every call.
    bits: u64,
}

/// A half-open trial holding a permit.
const G_TRIAL: u64 = 1 << 32;
/// The inner service was called (unset while a permit waits in the service between
/// `poll_ready` and `call`).
const G_CALLED: u64 = 1 << 33;
/// The outcome was reported.
const G_DONE: u64 = 1 << 34;

impl Guard {
    #[inline]
    fn new(lane: Arc<Lane>, generation: u32, trial: bool) -> Self {
        Guard {
            lane,
            start: 0,
            bits: u64::from(generation) | if trial { G_TRIAL } else { 0 },
        }
    }

    #[inline]
    fn generation(&self) -> u32 {
        self.bits as u32
    }

    #[inline]
    fn trial(&self) -> bool {
        self.bits & G_TRIAL != 0
    }

    #[inline]
    fn called(&self) -> bool {
        self.bits & G_CALLED != 0
    }

    /// The call is being sent now; starts the slow-call clock if a slow-call policy is on.
    #[inline]
    pub(crate) fn mark_called(&mut self) {
        self.bits |= G_CALLED;
        let shared = &self.lane.shared;
        if shared.flags() & F_SLOW != 0 {
            self.start = shared.nanos(Instant::now()) + 1;
        }
    }

    /// Reports the outcome (once); the guard is then inert and only releases its lane.
    #[inline]
    pub(crate) fn finish<T, E: Classify>(&mut self, result: &Result<T, E>) {
        if self.bits & G_DONE != 0 {
            return;
        }
        self.bits |= G_DONE;
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(error) => self.lane.shared.classify(error),
        };
        self.lane.shared.record(self, outcome);
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if self.bits & G_DONE == 0 {
            self.lane.shared.abandon(self);
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("breaker", &self.lane.shared.name)
            .field("generation", &self.generation())
            .field("trial", &self.trial())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fields_do_not_overlap() {
        let w = Word::new(BreakerState::HalfOpen, GEN_MASK, 0xFFFF, 0xFFFF);
        assert_eq!(w.state(), BreakerState::HalfOpen);
        assert_eq!(w.generation(), GEN_MASK);
        assert_eq!((w.a(), w.b()), (0xFFFF, 0xFFFF));
        let w = w.with_a(3).with_b(1);
        assert_eq!(
            (w.state(), w.generation(), w.a(), w.b()),
            (BreakerState::HalfOpen, GEN_MASK, 3, 1)
        );
        // The generation wraps without touching the state.
        let wrapped = Word::new(BreakerState::Open, GEN_MASK.wrapping_add(1), 0, 0);
        assert_eq!(
            (wrapped.state(), wrapped.generation()),
            (BreakerState::Open, 0)
        );
        for state in BreakerState::ALL {
            assert_eq!(Word::new(state, 7, 1, 2).state(), state);
        }
    }

    #[test]
    fn the_guard_stays_small() {
        // Moved with every response future; a larger one measurably slows the closed path.
        assert_eq!(std::mem::size_of::<Guard>(), 24);
        assert_eq!(std::mem::size_of::<Option<Guard>>(), 24);
    }

    #[test]
    fn jitter_source_is_uniform_enough() {
        let mut rng = 0x1234_5678_9abc_def1;
        let draws: Vec<f64> = (0..10_000).map(|_| next_unit(&mut rng)).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
