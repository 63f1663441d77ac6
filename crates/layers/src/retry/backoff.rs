//! How long to wait before the next attempt: a growth shape, a cap and a jitter.
//!
//! The formulas are those of Marc Brooker's "Exponential Backoff And Jitter" (AWS Architecture
//! Blog, 2015), with `base` the first delay, `cap` the maximum and `n` the number of retries
//! already made (0 before the first retry):
//!
//! | shape | delay before jitter |
//! |---|---|
//! | [`Backoff::Constant`] | `base` |
//! | [`Backoff::Linear`] | `min(cap, base * (n + 1))` |
//! | [`Backoff::Exponential`] | `min(cap, base * 2^n)` |
//!
//! | jitter | delay slept |
//! |---|---|
//! | [`Jitter::None`] | `d` |
//! | [`Jitter::Full`] | `random(0, d)` |
//! | [`Jitter::Equal`] | `d / 2 + random(0, d / 2)` |
//! | [`Jitter::Decorrelated`] | `min(cap, random(base, 3 * previous))`, `previous` starting at `base` (the shape is ignored) |

use std::time::Duration;

/// How the delay grows from one retry to the next, before jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// Always `base`.
    Constant,
    /// `base`, `2 * base`, `3 * base`… up to the cap.
    Linear,
    /// `base`, `2 * base`, `4 * base`… up to the cap.
    Exponential,
}

/// How the computed delay is randomised, so that clients that failed together do not retry
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: exactly the delay of the [`Backoff`] shape. Only for tests and for a
    /// single client; a fleet retrying in lockstep hits the server in waves.
    None,
    /// Uniform in `[0, d]`. The fewest calls and the least total work in Brooker's simulation,
    /// and the default.
    Full,
    /// Uniform in `[d/2, d]`: never much shorter than the shape asks for.
    Equal,
    /// Uniform in `[base, 3 * previous delay]`, capped: grows like an exponential without
    /// depending on the retry count.
    Decorrelated,
}

/// The retry behaviour for one [`ErrorKind`](crate::ErrorKind): how many attempts, and the
/// delays between them.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::retry::{Backoff, Jitter, KindPolicy};
///
/// let policy = KindPolicy::exponential(4, Duration::from_millis(50), Duration::from_secs(1))
///     .with_jitter(Jitter::Equal);
/// assert_eq!(policy.max_attempts, 4);
/// assert_eq!(policy.backoff, Backoff::Exponential);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindPolicy {
    /// The most attempts a call makes, the first one included: 1 means "never retry".
    pub max_attempts: u32,
    /// The delay before the first retry (before jitter), and the floor of decorrelated jitter.
    pub base: Duration,
    /// No delay computed by the policy is longer (a server's `retry_after` may be).
    pub max: Duration,
    /// How the delay grows.
    pub backoff: Backoff,
    /// How it is randomised. Default: [`Jitter::Full`].
    pub jitter: Jitter,
}

impl KindPolicy {
    /// `max_attempts` attempts with delays `base`, `2 base`, `4 base`… capped at `max`, full jitter.
    pub const fn exponential(max_attempts: u32, base: Duration, max: Duration) -> Self {
        KindPolicy::new(max_attempts, base, max, Backoff::Exponential)
    }

    /// `max_attempts` attempts with delays `base`, `2 base`, `3 base`… capped at `max`, full jitter.
    pub const fn linear(max_attempts: u32, base: Duration, max: Duration) -> Self {
        KindPolicy::new(max_attempts, base, max, Backoff::Linear)
    }

    /// `max_attempts` attempts, `delay` apart, full jitter.
    pub const fn constant(max_attempts: u32, delay: Duration) -> Self {
        KindPolicy::new(max_attempts, delay, delay, Backoff::Constant)
    }

    /// One attempt: errors of this kind are not retried.
    pub const fn never() -> Self {
        KindPolicy::new(1, Duration::ZERO, Duration::ZERO, Backoff::Constant)
    }

    const fn new(max_attempts: u32, base: Duration, max: Duration, backoff: Backoff) -> Self {
        KindPolicy {
            max_attempts,
            base,
            max,
            backoff,
            jitter: Jitter::Full,
        }
    }

    /// The same policy with another jitter.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before jitter for retry number `retry` (0 for the first retry).
    pub fn shape(&self, retry: u32) -> Duration {
        let delay = match self.backoff {
            Backoff::Constant => Some(self.base),
            Backoff::Linear => self.base.checked_mul(retry.saturating_add(1)),
            Backoff::Exponential => 2u32
                .checked_pow(retry)
                .and_then(|factor| self.base.checked_mul(factor)),
        };
        delay.map_or(self.max, |d| d.min(self.max))
    }

    /// The delay to sleep before retry number `retry`, given the delay slept before the
    /// previous one (`None` before the first retry) and a source of randomness.
    pub fn delay(&self, retry: u32, previous: Option<Duration>, rng: &mut SplitMix64) -> Duration {
        match self.jitter {
            Jitter::None => self.shape(retry),
            Jitter::Full => rng.between(Duration::ZERO, self.shape(retry)),
            Jitter::Equal => {
                let d = self.shape(retry);
                let half = d / 2;
                half + rng.between(Duration::ZERO, d - half)
            }
            Jitter::Decorrelated => {
                let previous = previous.unwrap_or(self.base).max(self.base);
                let high = previous.saturating_mul(3);
                rng.between(self.base, high).min(self.max)
            }
        }
    }
}

/// A small, fast, seedable pseudo-random generator (Steele, Lea and Flood's SplitMix64).
///
/// Good enough to spread retries; not for anything secret. Each call's delays come from its
/// own generator, seeded from the layer's (optionally fixed) seed, so tests can replay them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// A duration uniform in `[low, high]` (nanosecond resolution); `low` if `high < low`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_nanos();
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        if span == 0 {
            return low;
        }
        // Lemire's multiply-shift maps 64 random bits onto [0, span] without a division.
        let offset = ((u128::from(self.next_u64()) * (u128::from(span) + 1)) >> 64) as u64;
        low + Duration::from_nanos(offset)
    }
}

pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn shapes_grow_as_named_and_stop_at_the_cap() {
        let exp = KindPolicy::exponential(10, ms(100), ms(1000));
        let lin = KindPolicy::linear(10, ms(100), ms(350));
        let con = KindPolicy::constant(10, ms(70));
        let take = |p: &KindPolicy| (0..6).map(|n| p.shape(n).as_millis()).collect::<Vec<_>>();
        assert_eq!(take(&exp), [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(take(&lin), [100, 200, 300, 350, 350, 350]);
        assert_eq!(take(&con), [70; 6]);
        assert_eq!(
            exp.shape(u32::MAX),
            ms(1000),
            "overflow saturates at the cap"
        );
    }

    #[test]
    fn between_stays_in_bounds_and_covers_the_range() {
        let mut rng = SplitMix64::new(7);
        let (mut low_half, mut high_half) = (0, 0);
        for _ in 0..10_000 {
            let d = rng.between(ms(10), ms(20));
            assert!((ms(10)..=ms(20)).contains(&d));
            if d < ms(15) {
                low_half += 1
            } else {
                high_half += 1
            }
        }
        assert!(
            low_half > 4_500 && high_half > 4_500,
            "{low_half} / {high_half}"
        );
        assert_eq!(rng.between(ms(5), ms(5)), ms(5));
        assert_eq!(rng.between(ms(5), ms(1)), ms(5));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let p = KindPolicy::exponential(5, ms(100), ms(5000));
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..4)
                .map(|n| p.delay(n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
