//! The retry budget: retries stay a bounded share of the traffic.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// A budget of retries shared by every service that holds a clone of it.
///
/// Each call deposits into it, each retry withdraws; over a sliding window of `ttl`, retries
/// are allowed up to `retry_percent` of the calls plus a floor of `min_per_sec` retries per
/// second (so that a quiet client can still retry). When a retry is refused, the call fails
/// with the error of its last attempt. Without a budget, a backend that fails every call sees
/// `max_attempts` times the traffic exactly when it can least take it; with the default
/// budget it sees at most 1.2 times, plus the floor.
///
/// This is tower's [`TpsBudget`] (Finagle's design) with a count of refusals. Clones share
/// the budget; one budget may be shared by several [`RetryLayer`](super::RetryLayer)s with
/// [`RetryLayer::with_budget`](super::RetryLayer::with_budget).
///
/// # Cost
/// A deposit or withdrawal takes a short uncontended lock (to rotate the window) and a few
/// atomic operations.
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
    tps: TpsBudget,
    settings: BudgetSettings,
    refusals: AtomicU64,
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
                tps: TpsBudget::new(settings.ttl, settings.min_per_sec, settings.retry_percent),
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
        self.shared.tps.deposit();
    }

    /// Takes one retry from the budget; `false` (and one more refusal counted) when it is empty.
    pub fn withdraw(&self) -> bool {
        let ok = self.shared.tps.withdraw();
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
