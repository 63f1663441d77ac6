//! What several benches share.

use std::time::Duration;

/// The `p` quantile (0–1) of `sorted` timings: the smallest timing at or above that share of
/// them.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}
