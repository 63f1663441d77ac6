//! Durations that running services read on every call, so a configuration reload can change
//! them without rebuilding the stack.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A duration shared by every service built with it and changed in place: the next call
/// reads the new value, calls under way keep the one they started with.
///
/// Give one to [`DeadlineLayer::shared`](crate::DeadlineLayer::shared) or
/// [`AttemptTimeoutLayer::shared`](crate::AttemptTimeoutLayer::shared) to make that limit
/// reloadable. Clones share the value. Reading costs one relaxed atomic load; durations are
/// kept in whole nanoseconds, saturating at `u64::MAX` ns (about 584 years).
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::{DeadlineLayer, SharedDuration};
///
/// let deadline = SharedDuration::new(Duration::from_secs(10));
/// let layer = DeadlineLayer::shared(deadline.clone());
/// // …services built from `layer` give calls 10 s; later, while they run:
/// deadline.set(Duration::from_secs(3));
/// assert_eq!(layer.default_deadline(), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct SharedDuration(Arc<AtomicU64>);

impl SharedDuration {
    /// A shared duration starting at `value`.
    pub fn new(value: Duration) -> Self {
        SharedDuration(Arc::new(AtomicU64::new(nanos(value))))
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Changes the value for every service sharing it, from their next call on.
    pub fn set(&self, value: Duration) {
        self.0.store(nanos(value), Ordering::Relaxed);
    }
}

fn nanos(value: Duration) -> u64 {
    u64::try_from(value.as_nanos()).unwrap_or(u64::MAX)
}

impl fmt::Debug for SharedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedDuration").field(&self.get()).finish()
    }
}

/// A layer's duration: fixed when built, or shared and changeable.
#[derive(Clone, Debug)]
pub(crate) enum DurationSetting {
    Fixed(Duration),
    Shared(SharedDuration),
}

impl DurationSetting {
    #[inline]
    pub(crate) fn get(&self) -> Duration {
        match self {
            DurationSetting::Fixed(value) => *value,
            DurationSetting::Shared(shared) => shared.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_value_and_huge_values_saturate() {
        let a = SharedDuration::new(Duration::from_millis(5));
        let b = a.clone();
        b.set(Duration::from_millis(7));
        assert_eq!(a.get(), Duration::from_millis(7));
        a.set(Duration::MAX);
        assert_eq!(b.get(), Duration::from_nanos(u64::MAX));
    }
}
