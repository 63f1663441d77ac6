//! What the proxy does to the traffic: [`Toxics`], per [`Direction`], and the seeded choice of
//! the connections a partial outage hits.

use std::time::Duration;

/// Which way the bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → upstream: the requests.
    Upstream,
    /// Upstream → client: the responses.
    Downstream,
    /// Both ways: a setter given `Both` sets the effect on each direction.
    Both,
}

impl Direction {
    fn includes(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Direction::Both, _)
                | (Direction::Upstream, Side::Upstream)
                | (Direction::Downstream, Side::Downstream)
        )
    }
}

/// One of the two directions of a connection (what [`Direction`] is without `Both`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Upstream,
    Downstream,
}

/// The effects on one direction of traffic. [`Default`] is a clean pass-through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectionToxics {
    /// Added to every chunk of data before it is forwarded. Default zero.
    pub latency: Duration,
    /// Each chunk waits a further uniformly random time in `[0, jitter]`, drawn from the
    /// seeded generator; chunks never overtake each other. Default zero.
    pub jitter: Duration,
    /// The most bytes per second forwarded; `Some(0)` forwards nothing and, once the proxy's
    /// buffer is full, stops reading (backpressure). Default `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Read and drop everything, end of stream included: nothing is forwarded. Default off.
    pub blackhole: bool,
    /// After this many more bytes are forwarded (counted from when the limit is set, or from
    /// the connection's start if later), reset the connection: RST to the client and to the
    /// upstream. Default `None`.
    pub reset_after: Option<u64>,
    /// As `reset_after`, but close both sides gracefully (FIN, after `slow_close`): the data
    /// already sent arrives, truncated mid-message. Default `None`.
    pub close_after: Option<u64>,
    /// How long to hold an end of stream (FIN) before forwarding it, and a `close_after`
    /// close before doing it. Default zero.
    pub slow_close: Duration,
}

impl DirectionToxics {
    /// The byte limit that comes first, and whether it resets (`true`) or closes the
    /// connection. On a tie the reset wins.
    pub(crate) fn cut_limit(&self) -> Option<(u64, bool)> {
        match (self.reset_after, self.close_after) {
            (Some(reset), Some(close)) if close < reset => Some((close, false)),
            (Some(reset), _) => Some((reset, true)),
            (None, Some(close)) => Some((close, false)),
            (None, None) => None,
        }
    }
}

/// Everything the proxy does to the connections, as one value: see
/// [`ChaosProxy::set`](super::ChaosProxy::set) and
/// [`ChaosProxy::update`](super::ChaosProxy::update). [`Default`] is a clean pass-through.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_testkit::{Direction, Toxics};
///
/// let mut toxics = Toxics::default();
/// toxics.downstream.latency = Duration::from_millis(20);
/// toxics.set(Direction::Both, |side| side.bandwidth = Some(64 * 1024));
/// assert_eq!(toxics.upstream.bandwidth, Some(64 * 1024));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Toxics {
    /// Effects on the requests (client → upstream).
    pub upstream: DirectionToxics,
    /// Effects on the responses (upstream → client).
    pub downstream: DirectionToxics,
    /// The fraction of connections the effects apply to, in `[0, 1]`; the others pass clean.
    /// Which ones is decided by [`affects`](Self::affects). Default 1: every connection.
    pub fraction: f64,
    /// Seeds the choice of affected connections and the jitter, so that a run can be
    /// repeated. Default 0.
    pub seed: u64,
}

impl Default for Toxics {
    fn default() -> Self {
        Toxics {
            upstream: DirectionToxics::default(),
            downstream: DirectionToxics::default(),
            fraction: 1.0,
            seed: 0,
        }
    }
}

impl Toxics {
    /// Applies `change` to the effects of each direction `direction` names.
    pub fn set(&mut self, direction: Direction, mut change: impl FnMut(&mut DirectionToxics)) {
        if direction.includes(Side::Upstream) {
            change(&mut self.upstream);
        }
        if direction.includes(Side::Downstream) {
            change(&mut self.downstream);
        }
    }

    /// Whether the effects apply to the proxy's `connection`-th accepted connection
    /// (counting from 0).
    ///
    /// The answer depends only on [`seed`](Self::seed), [`fraction`](Self::fraction) and
    /// `connection`, not on timing: the same seed picks the same connections in every run, and
    /// a larger fraction picks a superset of a smaller one's.
    pub fn affects(&self, connection: u64) -> bool {
        if self.fraction >= 1.0 {
            return true;
        }
        unit(mix(self.seed ^ mix(connection))) < self.fraction
    }

    pub(crate) fn side(&self, side: Side) -> &DirectionToxics {
        match side {
            Side::Upstream => &self.upstream,
            Side::Downstream => &self.downstream,
        }
    }

    /// The byte limits of both directions, to tell whether a change restarts their count.
    pub(crate) fn cut_limits(&self) -> [Option<(u64, bool)>; 2] {
        [self.upstream.cut_limit(), self.downstream.cut_limit()]
    }
}

/// A small seeded generator (SplitMix64): reproducible jitter without a dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator for one direction of one connection.
    pub(crate) fn new(seed: u64, connection: u64, side: Side) -> Self {
        let salt = match side {
            Side::Upstream => 0x5555_5555_5555_5555,
            Side::Downstream => 0xAAAA_AAAA_AAAA_AAAA,
        };
        Rng(seed ^ mix(connection ^ salt))
    }

    /// A uniform duration in `[0, max]`.
    pub(crate) fn duration(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        max.mul_f64(unit(mix(self.0)))
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in `[0, 1)`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}
