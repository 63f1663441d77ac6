//! The marked answers of a degraded stack: [`Queued`] (a write accepted into the write-behind
//! queue, not yet applied) and [`Fallback`] (an answer that did not come fresh from Qdrant).
//!
//! Both travel as [`VectorResponse`] variants so that every layer passes them through
//! unchanged, and the caller can always tell them from a fresh answer: a match on the
//! response, not a log line.

use std::fmt;
use std::time::Duration;

use qdrant_tower_layers::ErrorKind;

use crate::VectorResponse;

/// A write the durable write-behind queue accepted instead of sending it: it is on disk
/// (fsynced) under sequence number `seq` and will be applied when Qdrant is back, in order
/// with the collection's other queued writes. Not a success: Qdrant has not seen it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Queued {
    /// The record's sequence number in the queue (grows with each accepted write).
    pub seq: u64,
    /// The queued write's operation name (`"upsert"`, `"delete_points"`…).
    pub operation: &'static str,
    /// Why it was queued rather than sent: the error of the attempt to send it, or `None`
    /// when earlier writes to its collection were still queued (it waits behind them, to
    /// keep their order).
    pub cause: Option<ErrorKind>,
}

impl Queued {
    /// A queued write's outcome.
    pub const fn new(seq: u64, operation: &'static str, cause: Option<ErrorKind>) -> Self {
        Queued {
            seq,
            operation,
            cause,
        }
    }
}

/// Where a fallback answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackSource {
    /// A static default configured for the operation.
    Static,
    /// A function of the request and the error.
    Computed,
    /// The last good answer to the same read, from the read cache (see [`Fallback::age`]).
    Stale,
    /// A secondary service (another Qdrant).
    Secondary,
}

impl FallbackSource {
    /// The source's name, as in metrics: `static`, `computed`, `stale`, `secondary`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FallbackSource::Static => "static",
            FallbackSource::Computed => "computed",
            FallbackSource::Stale => "stale",
            FallbackSource::Secondary => "secondary",
        }
    }
}

impl fmt::Display for FallbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An answer given in place of a failed call: the answer, where it came from, the failure it
/// stands in for and, for a stale answer, how old it is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Fallback {
    /// The answer given instead (never itself a `Fallback` or `Queued`).
    pub response: VectorResponse,
    /// Where it came from.
    pub source: FallbackSource,
    /// The kind of error of the call it replaces.
    pub cause: ErrorKind,
    /// For [`FallbackSource::Stale`]: how long ago Qdrant gave this answer.
    pub age: Option<Duration>,
}

impl Fallback {
    /// A fallback answer.
    pub fn new(
        response: VectorResponse,
        source: FallbackSource,
        cause: ErrorKind,
        age: Option<Duration>,
    ) -> Self {
        Fallback {
            response: response.into_fresh_or_inner(),
            source,
            cause,
            age,
        }
    }
}

impl VectorResponse {
    /// Whether this is Qdrant's own answer, just received: not [`Queued`], not a
    /// [`Fallback`].
    pub fn is_fresh(&self) -> bool {
        !matches!(
            self,
            VectorResponse::Queued(_) | VectorResponse::Fallback(_)
        )
    }

    /// The fallback marker, if this answer is one.
    pub fn fallback(&self) -> Option<&Fallback> {
        match self {
            VectorResponse::Fallback(fallback) => Some(fallback),
            _ => None,
        }
    }

    /// The queue marker, if this write was queued rather than applied.
    pub fn queued(&self) -> Option<Queued> {
        match self {
            VectorResponse::Queued(queued) => Some(*queued),
            _ => None,
        }
    }

    /// A fallback's answer, or the response itself.
    fn into_fresh_or_inner(self) -> VectorResponse {
        match self {
            VectorResponse::Fallback(fallback) => fallback.response,
            other => other,
        }
    }
}
