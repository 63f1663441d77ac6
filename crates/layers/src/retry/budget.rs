//! The retry budget: retries stay a bounded share of the traffic.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A budget of retries shared by every service that holds a clone of it.
///
/// Each call deposits into it, each retry withdraws; over a sliding window of `ttl`, retries
/// are allowed up to `retry_percent` of the calls plus a floor of `min_per_sec` retries per
/// second (so that a quiet client can still retry). When a retry is refused, the call fails
/// with the error of its last attempt. Without a budget, a backend that fails every call sees
/// `max_attempts` times the traffic exactly when it can least take it; with the default
/// budget it sees at most 1.2 times, plus the floor.
///
/// The design is Finagle's, as tower's `TpsBudget` has it (the same amounts: a deposit of 1,
/// a withdrawal of `1 / retry_percent`, a reserve of `min_per_sec × ttl` withdrawals), without
/// its lock: the window is ten slots of `ttl / 10`, each an atomic counter, and the slot in use
/// follows Tokio's clock (so paused-clock tests see it move). Clones share the budget; one
/// budget may be shared by several [`RetryLayer`](super::RetryLayer)s with
/// [`RetryLayer::with_budget`](super::RetryLayer::with_budget).
///
/// # Cost
/// A deposit is one clock read (none with [`deposit_at`](Self::deposit_at), when the caller
/// read the clock already: the retry layer does) and two atomic operations, a withdrawal a
/// clock read and eleven loads. When the window moves on, the one caller that moves it clears
/// the slots it skipped; a deposit racing that clearing may be lost, which only ever makes the
/// budget stricter by that deposit.
///
/// # Bound
/// The window starts full: a client may spend `min_per_sec * ttl` retries at once, then
/// `min_per_sec` per second on average. Over `T` seconds and `N` calls, retries stay at or
/// below `retry_percent * N + min_per_sec * (T + ttl)`.
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    tps: Tps,
    settings: BudgetSettings,
    refusals: AtomicU64,
}

/// The number of slots the window is cut into.
const SLOTS: usize = 10;

/// The sliding window of deposits and withdrawals.
struct Tps {
    epoch: Instant,
    /// A slot's length.
    slot_nanos: u64,
    /// The slot index (counted from `epoch`) the window ends with.
    current: AtomicU64,
    slots: [AtomicI64; SLOTS],
    reserve: i64,
    deposit_amount: i64,
    withdraw_amount: i64,
}

impl Tps {
    fn new(settings: BudgetSettings) -> Self {
        let (deposit_amount, withdraw_amount) = if settings.retry_percent == 0.0 {
            (0, 1)
        } else if settings.retry_percent <= 1.0 {
            (1, (1.0 / settings.retry_percent) as i64)
        } else {
            (1000, (1000.0 / settings.retry_percent) as i64)
        };
        let reserve = i64::from(settings.min_per_sec)
            .saturating_mul(settings.ttl.as_secs() as i64)
            .saturating_mul(withdraw_amount);
        Tps {
            epoch: Instant::now(),
            slot_nanos: (settings.ttl.as_nanos() as u64 / SLOTS as u64).max(1),
            current: AtomicU64::new(0),
            slots: Default::default(),
            reserve,
            deposit_amount,
            withdraw_amount,
        }
    }

    /// Moves the window to `now` and returns the slot in use.
    fn advance(&self, now: Instant) -> &AtomicI64 {
        let index = now.saturating_duration_since(self.epoch).as_nanos() as u64 / self.slot_nanos;
        let mut current = self.current.load(Ordering::Acquire);
        while current < index {
            match self.current.compare_exchange_weak(
                current,
                index,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The slots of the windows skipped, now past the end: emptied.
                    for skipped in (current + 1..=index).rev().take(SLOTS) {
                        self.slots[skipped as usize % SLOTS].store(0, Ordering::Relaxed);
                    }
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        &self.slots[index.max(current) as usize % SLOTS]
    }

    fn deposit(&self, now: Instant) {
        if self.deposit_amount != 0 {
            self.advance(now)
                .fetch_add(self.deposit_amount, Ordering::Relaxed);
        }
    }

    fn balance(&self) -> i64 {
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(self.reserve, i64::saturating_add)
    }

    fn withdraw(&self, now: Instant) -> bool {
        let slot = self.advance(now);
        if self.balance() >= self.withdraw_amount {
            slot.fetch_sub(self.withdraw_amount, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// The parameters of a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// How long a deposit counts (1 s to 60 s). Default: 10 s.
    pub ttl: Duration,
    /// Retries allowed per second whatever the traffic (below `i32::MAX`). Default: 10.
    pub min_per_sec: u32,
    /// Retries allowed per call, as a fraction (0 to 1000; 0.2 is 20 %). Default: 0.2.
    pub retry_percent: f32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_percent: 0.2,
        }
    }
}

impl BudgetSettings {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), super::ConfigError> {
        let bad = |field, problem| Err(super::ConfigError::new("retry", field, problem));
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return bad("budget.ttl", "must be between 1 s and 60 s");
        }
        if self.min_per_sec >= i32::MAX as u32 {
            return bad("budget.min_per_sec", "must be below 2^31 - 1");
        }
        if !(0.0..=1000.0).contains(&self.retry_percent) {
            return bad("budget.retry_percent", "must be between 0 and 1000");
        }
        Ok(())
    }
}

impl RetryBudget {
    /// A budget allowing `retry_percent` of calls to be retried (0.2 for 20 %) plus
    /// `min_per_sec` retries per second, counted over `ttl`.
    ///
    /// # Panics
    /// If a parameter is out of the range [`BudgetSettings`] documents; use
    /// [`RetryBudget::from_settings`] to get an error instead.
    pub fn new(ttl: Duration, min_per_sec: u32, retry_percent: f32) -> Self {
        let settings = BudgetSettings {
            ttl,
            min_per_sec,
            retry_percent,
        };
        match RetryBudget::from_settings(settings) {
            Ok(budget) => budget,
            Err(e) => panic!("{e}"),
        }
    }

    /// A budget with these settings, or the first field out of range.
    pub fn from_settings(settings: BudgetSettings) -> Result<Self, super::ConfigError> {
        settings.validate()?;
        Ok(RetryBudget {
            shared: Arc::new(Shared {
                tps: Tps::new(settings),
                settings,
                refusals: AtomicU64::new(0),
            }),
        })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> BudgetSettings {
        self.shared.settings
    }

    /// Records a call (done by the retry service for every call it receives).
    pub fn deposit(&self) {
        self.shared.tps.deposit(Instant::now());
    }

    /// Records a call at `now`, a clock reading the caller has already taken.
    pub fn deposit_at(&self, now: Instant) {
        self.shared.tps.deposit(now);
    }

    /// Takes one retry from the budget; `false` (and one more refusal counted) when it is empty.
    pub fn withdraw(&self) -> bool {
        let ok = self.shared.tps.withdraw(Instant::now());
        if !ok {
            self.shared.refusals.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// How many retries the budget has refused since it was built.
    pub fn refusals(&self) -> u64 {
        self.shared.refusals.load(Ordering::Relaxed)
    }

    /// Whether `self` and `other` are the same budget.
    pub fn ptr_eq(&self, other: &RetryBudget) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Default for RetryBudget {
    /// 20 % of calls plus 10 retries per second, over 10 s.
    fn default() -> Self {
        RetryBudget::from_settings(BudgetSettings::default()).expect("valid defaults")
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("settings", &self.shared.settings)
            .field("balance", &self.shared.tps.balance())
            .field("refusals", &self.refusals())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_floor_alone_allows_min_per_sec_times_ttl() {
        let budget = RetryBudget::new(Duration::from_secs(1), 5, 0.0);
        let granted = (0..20).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 5);
        assert_eq!(budget.refusals(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_buy_a_share_of_retries() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
        for _ in 0..50 {
            budget.deposit();
        }
        let granted = (0..50).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_leave_the_window_after_ttl() {
        let budget = RetryBudget::new(Duration::from_secs(1), 0, 1.0);
        budget.deposit();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!budget.withdraw(), "the deposit expired");
        // Deposits spread over the window all count until each one's slot leaves it.
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        for _ in 0..5 {
            budget.deposit();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // 5 s after the first deposit: all five count.
        assert!((0..5).all(|_| budget.withdraw()));
        assert!(!budget.withdraw());
        for _ in 0..5 {
            budget.deposit();
        }
        // 10 s later the window has moved past every one of them.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_as_the_window_moves() {
        let budget = RetryBudget::new(Duration::from_secs(2), 3, 0.0);
        assert_eq!(
            (0..10).filter(|_| budget.withdraw()).count(),
            6,
            "3/s × 2 s"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            (0..10).filter(|_| budget.withdraw()).count(),
            0,
            "spent within the window"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            (0..10).filter(|_| budget.withdraw()).count(),
            6,
            "the spending left the window"
        );
    }

    #[test]
    fn many_threads_never_overdraw_more_than_their_number() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let budget = RetryBudget::new(Duration::from_secs(60), 0, 0.5);
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let _guard = runtime.enter();
                    for _ in 0..1000 {
                        budget.deposit();
                        if budget.withdraw() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // 4000 deposits buy 2000 retries; a withdrawal checks then takes, so each thread can
        // overdraw by one at most.
        let granted = granted.into_inner();
        assert!(
            (1996..=2004).contains(&granted),
            "{granted} retries granted"
        );
    }

    #[test]
    fn settings_are_validated_by_name() {
        let bad = BudgetSettings {
            ttl: Duration::from_millis(10),
            ..BudgetSettings::default()
        };
        assert_eq!(
            RetryBudget::from_settings(bad).unwrap_err().field(),
            "budget.ttl"
        );
        let bad = BudgetSettings {
            retry_percent: -1.0,
            ..BudgetSettings::default()
        };
        assert_eq!(
            RetryBudget::from_settings(bad).unwrap_err().field(),
            "budget.retry_percent"
        );
    }
}
