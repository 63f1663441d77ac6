//! Sliding windows of recent outcomes, recorded with atomics only.
//!
//! Both windows keep `failures` and `slow` counts packed in one `AtomicU64` (high and low 32
//! bits) so a call that is both updates them in one operation. Every update adds exactly what
//! it removes from a slot, so the totals always equal the sum of the slots, however calls
//! interleave.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::*};

const FAIL: u8 = 1;
const SLOW: u8 = 2;

/// What the window holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
}

fn bits(failure: bool, slow: bool) -> u8 {
    (if failure { FAIL } else { 0 }) | (if slow { SLOW } else { 0 })
}

/// The packed (failures << 32 | slow) value of one slot.
fn packed(bits: u8) -> u64 {
    (u64::from(bits & FAIL) << 32) | u64::from((bits & SLOW) >> 1)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xFFFF_FFFF)
}

/// The last `n` recorded calls: a ring of one-byte slots claimed with a `fetch_add`.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Calls ever recorded; the next slot is `head % len`.
    head: AtomicU64,
    /// `head` when the window was last cleared.
    base: AtomicU64,
    bad: AtomicU64,
}

impl CountWindow {
    pub fn new(size: u32) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU64::new(0),
            base: AtomicU64::new(0),
            bad: AtomicU64::new(0),
        }
    }

    pub fn size(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn record(&self, failure: bool, slow: bool) {
        let i = self.head.fetch_add(1, Relaxed);
        let new = bits(failure, slow);
        let old = self.slots[(i % self.slots.len() as u64) as usize].swap(new, Relaxed);
        if old != new {
            // Wrapping add of (new - old) per packed field: neither field goes negative, so no
            // borrow crosses from the low half into the high half.
            let delta = packed(new).wrapping_sub(packed(old));
            self.bad.fetch_add(delta, Relaxed);
        }
    }

    pub fn counts(&self) -> Counts {
        let recorded = self
            .head
            .load(Relaxed)
            .saturating_sub(self.base.load(Relaxed));
        let (failures, slow) = unpack(self.bad.load(Relaxed));
        let calls = recorded.min(self.slots.len() as u64);
        Counts {
            calls,
            failures: failures.min(calls),
            slow: slow.min(calls),
        }
    }

    /// Forgets every outcome. Cold path, called under the breaker's transition lock.
    pub fn clear(&self) {
        self.base.store(self.head.load(Relaxed), Relaxed);
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            if old != 0 {
                self.bad.fetch_sub(packed(old), Relaxed);
            }
        }
    }
}

struct Bucket {
    /// The time slice (`now / width`) this bucket counts, `u64::MAX` when unused.
    tick: AtomicU64,
    calls: AtomicU64,
    bad: AtomicU64,
}

/// The calls of the last `length`, in buckets of `length / n`. Recording is atomics only; the
/// first call of a new time slice takes a short lock to reset the bucket it reuses.
pub(crate) struct TimeWindow {
    width: u64,
    buckets: Box<[Bucket]>,
    rotate: Mutex<()>,
}

impl TimeWindow {
    pub fn new(length_nanos: u64, buckets: u32) -> Self {
        TimeWindow {
            width: (length_nanos / u64::from(buckets)).max(1),
            buckets: (0..buckets)
                .map(|_| Bucket {
                    tick: AtomicU64::new(u64::MAX),
                    calls: AtomicU64::new(0),
                    bad: AtomicU64::new(0),
                })
                .collect(),
            rotate: Mutex::new(()),
        }
    }

    pub fn shape(&self) -> (u64, usize) {
        (self.width, self.buckets.len())
    }

    /// Records a call that ended at `now` (nanoseconds since the breaker's origin).
    pub fn record(&self, now: u64, failure: bool, slow: bool) {
        let tick = now / self.width;
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        let current = bucket.tick.load(Acquire);
        if current != tick {
            if current != u64::MAX && current > tick {
                // A call that read the clock long ago and ends after its slice was reused.
                return;
            }
            let _rotating = self.rotate.lock().unwrap_or_else(|e| e.into_inner());
            let current = bucket.tick.load(Acquire);
            if current == u64::MAX || current < tick {
                bucket.calls.store(0, Relaxed);
                bucket.bad.store(0, Relaxed);
                bucket.tick.store(tick, Release);
            } else if current > tick {
                return;
            }
        }
        bucket.calls.fetch_add(1, Relaxed);
        let bad = packed(bits(failure, slow));
        if bad != 0 {
            bucket.bad.fetch_add(bad, Relaxed);
        }
    }

    pub fn counts(&self, now: u64) -> Counts {
        let tick = now / self.width;
        let n = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let t = bucket.tick.load(Acquire);
            if t != u64::MAX && t <= tick && t + n > tick {
                counts.calls += bucket.calls.load(Relaxed);
                let (failures, slow) = unpack(bucket.bad.load(Relaxed));
                counts.failures += failures;
                counts.slow += slow;
            }
        }
        counts.failures = counts.failures.min(counts.calls);
        counts.slow = counts.slow.min(counts.calls);
        counts
    }

    pub fn clear(&self) {
        let _rotating = self.rotate.lock().unwrap_or_else(|e| e.into_inner());
        for bucket in self.buckets.iter() {
            bucket.tick.store(u64::MAX, Release);
            bucket.calls.store(0, Relaxed);
            bucket.bad.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_outcomes() {
        let w = CountWindow::new(4);
        for (failure, slow) in [(true, false), (true, true), (false, true), (false, false)] {
            w.record(failure, slow);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 2,
                slow: 2
            }
        );
        // Two more successes push the two failures out.
        w.record(false, false);
        w.record(false, false);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 0,
                slow: 1
            }
        );
        w.clear();
        assert_eq!(w.counts(), Counts::default());
        w.record(true, false);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        // 10 s in 10 buckets of 1 s.
        let s = 1_000_000_000;
        let w = TimeWindow::new(10 * s, 10);
        w.record(0, true, false);
        w.record(s / 2, false, true);
        w.record(3 * s, true, false);
        assert_eq!(
            w.counts(3 * s),
            Counts {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        // At 10 s the first bucket (0..1 s) has slid out.
        assert_eq!(w.counts(10 * s).calls, 1);
        // Reusing bucket 0's slot for tick 10 resets it.
        w.record(10 * s, false, false);
        assert_eq!(
            w.counts(10 * s),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(w.counts(13 * s).calls, 1);
        // A late record for a reused slot is dropped rather than corrupting it.
        w.record(0, true, true);
        assert_eq!(w.counts(10 * s).failures, 1);
        w.clear();
        assert_eq!(w.counts(10 * s), Counts::default());
    }
}
