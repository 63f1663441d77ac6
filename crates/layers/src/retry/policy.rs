//! What is retried, how often and how soon: the per-kind table and the rules around it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{KindPolicy, SplitMix64};
use super::budget::BudgetSettings;
use crate::ConfigError;
use crate::{Classify, ErrorKind, RequestInfo};

/// A user rule that can veto a retry the policy would make.
///
/// It is asked last, after the kind, idempotency and attempt checks, and before the budget;
/// `false` returns the error to the caller. It cannot make a non-transient error retryable.
pub type RetryPredicate = Arc<dyn Fn(&dyn RequestInfo, &dyn Classify) -> bool + Send + Sync>;

const KINDS: usize = ErrorKind::ALL.len();

/// The configuration of a [`RetryLayer`](super::RetryLayer): a [`KindPolicy`] per transient
/// [`ErrorKind`], a predicate, a deadline for the whole call and the retry budget.
///
/// Built from [`RetryPolicy::default`] with `with_*` methods; each says its default. The
/// default table (from DESIGN.md; "max attempts" counts the first attempt):
///
/// | kind | max attempts | base delay | max delay | backoff |
/// |---|---|---|---|---|
/// | `Connect` | 3 | 100 ms | 5 s | exponential |
/// | `RateLimited` | 5 | 500 ms | 30 s | exponential, never sooner than `retry_after` |
/// | `Unavailable` | 3 | 1 s | 10 s | exponential |
/// | `Timeout` | 2 | 1 s | 2 s | linear (idempotent requests only) |
/// | other transient (`Internal`) | 3 | 100 ms | 5 s | exponential |
///
/// all with [full jitter](super::Jitter::Full).
///
/// # The rules, in order
/// An error is returned to the caller, not retried, when:
/// 1. its kind is not [transient](ErrorKind::is_transient);
/// 2. the request is not [idempotent](RequestInfo::is_idempotent) and the error is a
///    `Timeout`, or [may have been sent](Classify::maybe_sent) (an ambiguous failure: retrying
///    could apply a write twice);
/// 3. the call has made its kind's `max_attempts`;
/// 4. the [predicate](Self::with_predicate) says no;
/// 5. the next delay (at least the error's [`retry_after`](Classify::retry_after), even above
///    the kind's `max`) would end at or after the [deadline](Self::with_deadline);
/// 6. the [budget](super::RetryBudget) is empty.
///
/// Attempts are counted per call, across kinds: after a `Connect` failure then an
/// `Unavailable` one, the call has made 2 attempts and `Unavailable`'s limit decides. The
/// backoff shape likewise advances with the call's retry count, and the kind of the latest
/// error picks the shape.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::ErrorKind;
/// use qdrant_tower_layers::retry::{Jitter, KindPolicy, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .with_kind(ErrorKind::Unavailable, KindPolicy::exponential(5, Duration::from_millis(200), Duration::from_secs(5)))
///     .with_kind(ErrorKind::Internal, KindPolicy::never())
///     .with_deadline(Duration::from_secs(10))
///     .with_predicate(|request, _error| request.operation() != "create_collection");
/// assert!(policy.validate().is_ok());
/// assert_eq!(policy.kind(ErrorKind::Internal).max_attempts, 1);
/// assert_eq!(policy.kind(ErrorKind::Unavailable).max_attempts, 5);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    table: [Option<KindPolicy>; KINDS],
    other: KindPolicy,
    predicate: Option<RetryPredicate>,
    deadline: Option<Duration>,
    budget: Option<BudgetSettings>,
    seed: Option<u64>,
    // A `with_time_scale` factor that is not a positive finite number, reported by `validate`.
    bad_scale: bool,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let mut table = [None; KINDS];
        table[ErrorKind::Connect as usize] = Some(KindPolicy::exponential(3, ms(100), ms(5_000)));
        table[ErrorKind::RateLimited as usize] =
            Some(KindPolicy::exponential(5, ms(500), ms(30_000)));
        table[ErrorKind::Unavailable as usize] =
            Some(KindPolicy::exponential(3, ms(1_000), ms(10_000)));
        table[ErrorKind::Timeout as usize] = Some(KindPolicy::linear(2, ms(1_000), ms(2_000)));
        RetryPolicy {
            table,
            other: KindPolicy::exponential(3, ms(100), ms(5_000)),
            predicate: None,
            deadline: None,
            budget: Some(BudgetSettings::default()),
            seed: None,
            bad_scale: false,
        }
    }
}

impl RetryPolicy {
    /// Retry errors of `kind` with `policy`. Has no effect on a kind that is not transient:
    /// those are never retried. Defaults: see the table above.
    pub fn with_kind(mut self, kind: ErrorKind, policy: KindPolicy) -> Self {
        self.table[kind as usize] = Some(policy);
        self
    }

    /// Errors of `kind` get at most `attempts` attempts (the first included); the kind's
    /// delays, backoff and jitter stay as they are.
    ///
    /// ```
    /// use std::time::Duration;
    /// use qdrant_tower_layers::ErrorKind;
    /// use qdrant_tower_layers::retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::default()
    ///     .with_attempts(ErrorKind::Unavailable, 5)
    ///     .with_base_delay(ErrorKind::Unavailable, Duration::from_millis(200));
    /// let unavailable = policy.kind(ErrorKind::Unavailable);
    /// assert_eq!((unavailable.max_attempts, unavailable.base), (5, Duration::from_millis(200)));
    /// assert_eq!(unavailable.max, Duration::from_secs(10), "the rest of the row is kept");
    /// assert_eq!(policy.kind(ErrorKind::Connect), RetryPolicy::default().kind(ErrorKind::Connect));
    /// ```
    pub fn with_attempts(self, kind: ErrorKind, attempts: u32) -> Self {
        self.edit(kind, |p| p.max_attempts = attempts)
    }

    /// Errors of `kind` wait `base` before the first retry (the shape grows from it); the
    /// kind's other settings stay.
    pub fn with_base_delay(self, kind: ErrorKind, base: Duration) -> Self {
        self.edit(kind, |p| p.base = base)
    }

    /// No delay computed for errors of `kind` is longer than `max` (a server's `retry_after`
    /// may be); the kind's other settings stay.
    pub fn with_max_delay(self, kind: ErrorKind, max: Duration) -> Self {
        self.edit(kind, |p| p.max = max)
    }

    /// Every kind's base and max delay multiplied by `factor` (`0.01` turns seconds into tens of
    /// milliseconds, for tests). A server's `retry_after` is never scaled: it stays a floor.
    /// The deadline is not scaled either. A factor that is not a positive finite number is
    /// reported by [`validate`](Self::validate) (and so by `RetryLayer::new`) as `time_scale`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use qdrant_tower_layers::ErrorKind;
    /// use qdrant_tower_layers::retry::RetryPolicy;
    ///
    /// let fast = RetryPolicy::default().with_time_scale(0.01);
    /// assert_eq!(fast.kind(ErrorKind::Unavailable).base, Duration::from_millis(10));
    /// assert!(RetryPolicy::default().with_time_scale(0.0).validate().is_err());
    /// ```
    pub fn with_time_scale(mut self, factor: f64) -> Self {
        if !(factor.is_finite() && factor > 0.0) {
            self.bad_scale = true;
            return self;
        }
        let scale = |d: Duration| {
            Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
        };
        for entry in self.table.iter_mut().flatten().chain([&mut self.other]) {
            entry.base = scale(entry.base);
            entry.max = scale(entry.max);
        }
        self
    }

    /// `kind`'s row, changed by `change`.
    fn edit(self, kind: ErrorKind, change: impl FnOnce(&mut KindPolicy)) -> Self {
        let mut row = self.kind(kind);
        change(&mut row);
        self.with_kind(kind, row)
    }

    /// The policy for transient kinds without an entry of their own (today `Internal`).
    /// Default: 3 attempts, 100 ms to 5 s, exponential, full jitter.
    pub fn with_other_transient(mut self, policy: KindPolicy) -> Self {
        self.other = policy;
        self
    }

    /// Veto retries with `predicate` (see [`RetryPredicate`]). Default: none.
    pub fn with_predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&dyn RequestInfo, &dyn Classify) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Bound the whole call, every attempt and backoff included, by `deadline` from the moment
    /// the service is called: no attempt starts after it, no backoff sleeps past it, and an
    /// attempt still running when it passes is dropped and the call fails with
    /// [`DeadlineExceeded`](super::DeadlineExceeded). Needs a Tokio runtime with time enabled.
    /// Default: none (each attempt is bounded only by the layers below).
    ///
    /// A request that carries its own [deadline](crate::RequestInfo::deadline) (set by the
    /// caller or by a [`DeadlineLayer`](crate::deadline::DeadlineLayer) above) is bounded by
    /// it too, with or without this: the earlier of the two wins, and the request carries it
    /// on to the layers below and the backend.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// No deadline for the whole call. Default: none.
    pub fn without_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Limit retries with a [`RetryBudget`](super::RetryBudget) of these settings, built by the
    /// layer. Default: 20 % of calls plus 10 retries per second, over 10 s.
    pub fn with_budget(mut self, settings: BudgetSettings) -> Self {
        self.budget = Some(settings);
        self
    }

    /// No budget: every retry the table allows is made, even when the backend fails every
    /// call. Default: a budget is on.
    pub fn without_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Draw jitter from generators seeded from `seed`, so that delays repeat from run to run
    /// (for tests). Default: a random seed per layer.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The policy errors of `kind` get ([`KindPolicy::never`] for a non-transient kind).
    pub fn kind(&self, kind: ErrorKind) -> KindPolicy {
        if !kind.is_transient() {
            return KindPolicy::never();
        }
        self.table[kind as usize].unwrap_or(self.other)
    }

    /// The deadline of a whole call, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The budget settings, if a budget is on.
    pub fn budget(&self) -> Option<BudgetSettings> {
        self.budget
    }

    /// The fixed seed, if any.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::new("retry", field, problem));
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.is_transient()) {
            let p = self.kind(kind);
            if p.max_attempts == 0 {
                return bad(
                    field_name(kind),
                    "max_attempts must be at least 1 (the first attempt)",
                );
            }
            if p.max < p.base {
                return bad(
                    field_name(kind),
                    "max delay must be at least the base delay",
                );
            }
        }
        if self.bad_scale {
            return bad("time_scale", "must be a positive, finite factor");
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return bad("deadline", "must be greater than zero");
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(())
    }

    /// Decides what to do after attempt number `attempt` (1 for the first) failed with `error`.
    pub(crate) fn decide<Req, E>(
        &self,
        request: &Req,
        error: &E,
        attempt: u32,
        backoff: &mut BackoffState,
        deadline: Option<Instant>,
    ) -> Decision
    where
        Req: RequestInfo,
        E: Classify,
    {
        let kind = error.kind();
        if !kind.is_transient() {
            return Decision::Stop(Stop::NotTransient);
        }
        if !request.is_idempotent() {
            if kind == ErrorKind::Timeout {
                return Decision::Stop(Stop::NotIdempotent);
            }
            if error.maybe_sent() {
                return Decision::Stop(Stop::NotIdempotent);
            }
        }
        let policy = self.kind(kind);
        if attempt >= policy.max_attempts {
            return Decision::Stop(Stop::Exhausted);
        }
        if let Some(predicate) = &self.predicate
            && !predicate(request, error)
        {
            return Decision::Stop(Stop::Predicate);
        }
        let mut delay = policy.delay(backoff.retries, backoff.previous, &mut backoff.rng);
        if let Some(floor) = error.retry_after() {
            delay = delay.max(floor);
        }
        if let Some(deadline) = deadline
            && Instant::now() + delay >= deadline
        {
            return Decision::Stop(Stop::Deadline);
        }
        backoff.retries += 1;
        backoff.previous = Some(delay);
        Decision::Retry(delay)
    }
}

fn field_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Unavailable => "unavailable",
        _ => "internal",
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = f.debug_map();
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.is_transient()) {
            table.entry(&kind, &self.kind(kind));
        }
        table.finish()?;
        f.debug_struct("RetryPolicy")
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// One call's backoff state: its random generator and the delays so far.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    pub rng: SplitMix64,
    pub retries: u32,
    pub previous: Option<Duration>,
}

impl BackoffState {
    pub fn new(seed: u64) -> Self {
        BackoffState {
            rng: SplitMix64::new(seed),
            retries: 0,
            previous: None,
        }
    }
}

/// What the policy decided after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Sleep this long, then try again (the budget is still to be asked).
    Retry(Duration),
    /// Return the error.
    Stop(Stop),
}

/// Why an error was returned rather than retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    NotTransient,
    NotIdempotent,
    Exhausted,
    Predicate,
    Deadline,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::NotTransient => "not_transient",
            Stop::NotIdempotent => "not_idempotent",
            Stop::Exhausted => "attempts_exhausted",
            Stop::Predicate => "predicate",
            Stop::Deadline => "deadline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design_table() {
        let p = RetryPolicy::default();
        let row = |k| {
            let e = p.kind(k);
            (
                e.max_attempts,
                e.base.as_millis(),
                e.max.as_millis(),
                e.backoff,
            )
        };
        use super::super::Backoff::*;
        assert_eq!(row(ErrorKind::Connect), (3, 100, 5_000, Exponential));
        assert_eq!(row(ErrorKind::RateLimited), (5, 500, 30_000, Exponential));
        assert_eq!(row(ErrorKind::Unavailable), (3, 1_000, 10_000, Exponential));
        assert_eq!(row(ErrorKind::Timeout), (2, 1_000, 2_000, Linear));
        assert_eq!(row(ErrorKind::Internal), (3, 100, 5_000, Exponential));
        for kind in ErrorKind::ALL.into_iter().filter(|k| !k.is_transient()) {
            assert_eq!(p.kind(kind).max_attempts, 1, "{kind}");
        }
        assert_eq!(p.budget(), Some(BudgetSettings::default()));
        assert_eq!(p.deadline(), None);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn a_non_transient_kind_cannot_be_made_retryable() {
        let p =
            RetryPolicy::default().with_kind(ErrorKind::NotFound, KindPolicy::constant(5, ms(1)));
        assert_eq!(p.kind(ErrorKind::NotFound), KindPolicy::never());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let cases = [
            (
                RetryPolicy::default()
                    .with_kind(ErrorKind::Connect, KindPolicy::constant(0, ms(1))),
                "connect",
            ),
            (
                RetryPolicy::default().with_other_transient(KindPolicy::exponential(
                    3,
                    ms(10),
                    ms(1),
                )),
                "internal",
            ),
            (
                RetryPolicy::default().with_deadline(Duration::ZERO),
                "deadline",
            ),
            (
                RetryPolicy::default().with_budget(BudgetSettings {
                    min_per_sec: u32::MAX,
                    ..BudgetSettings::default()
                }),
                "budget.min_per_sec",
            ),
        ];
        for (policy, field) in cases {
            assert_eq!(policy.validate().unwrap_err().field(), field);
        }
    }
}
