//! What to inject and when: [`Fault`], [`Trigger`], [`FaultRule`] and [`FaultPlan`].

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::rpc::Rpc;

/// The header real Qdrant sets (to whole seconds) on a rate-limited `RESOURCE_EXHAUSTED`.
pub const RETRY_AFTER_HEADER: &str = "retry-after";
/// The header real Qdrant sets (to `1`) on `RESOURCE_EXHAUSTED` when its disk is full.
pub const INSUFFICIENT_STORAGE_HEADER: &str = "qdrant-insufficient-storage";

/// What a faulted call gets instead of (or after) the normal answer.
///
/// Build one with a constructor (`unavailable()`, `rate_limited(..)`, `delay(..)`,
/// `hang()`, `drop_connection()`…), then adjust it: [`with_message`](Fault::with_message) and
/// [`with_header`](Fault::with_header) for a status, [`delayed`](Fault::delayed) to wait first,
/// [`after_apply`](Fault::after_apply) to run the real handler (and so apply a write) before
/// acting. The default messages follow Qdrant's wording (`"Shard temporarily unavailable: …"`)
/// and end in `injected fault`, so a log line shows where the error came from.
///
/// Cloning is cheap enough for a test: a status fault holds its message and metadata.
#[derive(Clone, Debug)]
pub struct Fault {
    pub(crate) delay: Duration,
    pub(crate) apply_first: bool,
    pub(crate) answer: Answer,
}

/// What the server finally does with a faulted call.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    /// Answer normally (only a delay is injected).
    Proceed,
    /// Answer this status.
    Status {
        code: Code,
        message: String,
        metadata: MetadataMap,
    },
    /// Never answer.
    Hang,
    /// Tear down the caller's TCP connection.
    DropConnection,
}

impl Fault {
    fn answer(answer: Answer) -> Self {
        Fault {
            delay: Duration::ZERO,
            apply_first: false,
            answer,
        }
    }

    /// Answers `code` with `message` and no metadata, without running the handler.
    pub fn status(code: Code, message: impl Into<String>) -> Self {
        Fault::answer(Answer::Status {
            code,
            message: message.into(),
            metadata: MetadataMap::new(),
        })
    }

    /// `UNAVAILABLE`, as Qdrant answers while a shard is down or the node is restarting.
    pub fn unavailable() -> Self {
        Fault::status(
            Code::Unavailable,
            "Shard temporarily unavailable: injected fault",
        )
    }

    /// `DEADLINE_EXCEEDED`, as Qdrant answers when an operation outlives its server-side timeout.
    pub fn deadline_exceeded() -> Self {
        Fault::status(
            Code::DeadlineExceeded,
            "Timeout: Operation timed out: injected fault",
        )
    }

    /// `INTERNAL`, Qdrant's answer to an unexpected failure.
    pub fn internal() -> Self {
        Fault::status(Code::Internal, "Service internal error: injected fault")
    }

    /// `RESOURCE_EXHAUSTED` with `retry-after`, as Qdrant's strict-mode rate limiter answers.
    ///
    /// The header holds whole seconds, `retry_after` rounded up (Qdrant sends whole seconds; a
    /// client must not come back sooner than asked).
    pub fn rate_limited(retry_after: Duration) -> Self {
        let seconds = whole_seconds_up(retry_after);
        Fault::status(
            Code::ResourceExhausted,
            format!(
                "Rate limiting exceeded: Operation requires 1 tokens but only 0 were available. \
                 Retry after {seconds}s: injected fault"
            ),
        )
        .with_header(RETRY_AFTER_HEADER, &seconds.to_string())
    }

    /// `RESOURCE_EXHAUSTED` with `qdrant-insufficient-storage: 1`, as Qdrant answers a write when
    /// its disk is full. Not a rate limit: clients must not retry it soon.
    pub fn insufficient_storage() -> Self {
        Fault::status(
            Code::ResourceExhausted,
            "No space left on device: not enough disk space to apply the update: injected fault",
        )
        .with_header(INSUFFICIENT_STORAGE_HEADER, "1")
    }

    /// `INVALID_ARGUMENT`, Qdrant's answer to bad input.
    pub fn invalid_argument() -> Self {
        Fault::status(Code::InvalidArgument, "Wrong input: injected fault")
    }

    /// `NOT_FOUND`, as for a missing collection or point.
    pub fn not_found() -> Self {
        Fault::status(Code::NotFound, "Not found: injected fault")
    }

    /// `PERMISSION_DENIED`, as Qdrant answers a valid key without the right to do this.
    pub fn permission_denied() -> Self {
        Fault::status(Code::PermissionDenied, "Forbidden: injected fault")
    }

    /// `UNAUTHENTICATED`, as Qdrant answers a missing or wrong API key.
    pub fn unauthenticated() -> Self {
        Fault::status(
            Code::Unauthenticated,
            "Must provide an API key or an Authorization bearer token: injected fault",
        )
    }

    /// A slow server: waits `by` (on tokio's clock), then answers normally.
    pub fn delay(by: Duration) -> Self {
        Fault::answer(Answer::Proceed).delayed(by)
    }

    /// Never answers: the call stays open until the client gives up (its timeout, or dropping
    /// the call, which resets the HTTP/2 stream) or the server shuts down (then `UNAVAILABLE`).
    /// The handler does not run.
    pub fn hang() -> Self {
        Fault::answer(Answer::Hang)
    }

    /// Tears down the caller's TCP connection without answering; every call in flight on it
    /// fails as a broken connection. The handler does not run, unless
    /// [`after_apply`](Fault::after_apply) says so.
    pub fn drop_connection() -> Self {
        Fault::answer(Answer::DropConnection)
    }

    /// Applies the call (a write happens), then answers `UNAVAILABLE`: the ambiguous failure
    /// that makes retrying a non-idempotent write dangerous.
    pub fn apply_then_unavailable() -> Self {
        Fault::unavailable().after_apply()
    }

    /// Applies the call (a write happens), then drops the connection: the caller sees a broken
    /// connection and cannot know the write succeeded.
    pub fn apply_then_drop() -> Self {
        Fault::drop_connection().after_apply()
    }

    /// Replaces the status message. No effect on faults that answer no status.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        if let Answer::Status { message: m, .. } = &mut self.answer {
            *m = message.into();
        }
        self
    }

    /// Adds a metadata entry (an HTTP/2 trailer) to the status. No effect on faults that answer
    /// no status.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid lower-case ASCII metadata key or `value` not a valid ASCII
    /// metadata value: both are fixed by the test that writes them.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Answer::Status { metadata, .. } = &mut self.answer {
            let value: MetadataValue<_> = value
                .parse()
                .unwrap_or_else(|err| panic!("invalid metadata value {value:?}: {err}"));
            metadata.insert(name, value);
        }
        self
    }

    /// Waits `by` (on tokio's clock) before acting, and before the handler runs.
    pub fn delayed(mut self, by: Duration) -> Self {
        self.delay = by;
        self
    }

    /// Runs the real handler first, so a write is applied, and acts only then; the handler's
    /// own answer (success or error) is thrown away.
    pub fn after_apply(mut self) -> Self {
        self.apply_first = true;
        self
    }

    /// The gRPC code this fault answers, if it answers a status.
    pub fn code(&self) -> Option<Code> {
        match &self.answer {
            Answer::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The status this fault answers, if it answers one.
    pub(crate) fn to_status(&self) -> Option<tonic::Status> {
        match &self.answer {
            Answer::Status {
                code,
                message,
                metadata,
            } => Some(tonic::Status::with_metadata(
                *code,
                message.clone(),
                metadata.clone(),
            )),
            _ => None,
        }
    }
}

/// `duration` in whole seconds, rounded up, and at least 1: a `retry-after` of 0 would invite
/// an immediate retry.
pub(crate) fn whole_seconds_up(duration: Duration) -> u64 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    seconds.max(1)
}

/// Which of the calls that match a [`FaultRule`] it acts on.
///
/// Calls are numbered from 1 in the order they reach the rule (after its RPC, collection,
/// time-window and predicate filters, and only if no earlier rule of the plan took the call),
/// so with sequential calls a trigger always picks the same ones.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Trigger {
    /// Every matching call.
    Always,
    /// Calls 1..=n, then none: "the first n attempts fail".
    First(u64),
    /// Calls n, 2n, 3n…
    EveryNth(u64),
    /// Every call after the first n.
    After(u64),
    /// Each call with probability `p` (clamped to 0..=1), decided by a hash of `seed` and the
    /// call's number: the same seed picks the same calls, run after run.
    Probability {
        /// Chance of acting on a call.
        p: f64,
        /// Seed of the decisions.
        seed: u64,
    },
}

impl Trigger {
    /// Whether the call numbered `n` (from 1) is acted on.
    pub(crate) fn fires(&self, n: u64) -> bool {
        match *self {
            Trigger::Always => true,
            Trigger::First(first) => n <= first,
            Trigger::EveryNth(every) => every > 0 && n.is_multiple_of(every),
            Trigger::After(after) => n > after,
            Trigger::Probability { p, seed } => unit_interval(seed, n) < p.clamp(0.0, 1.0),
        }
    }
}

/// A uniform number in [0, 1) from `seed` and `n`: SplitMix64's finaliser over both, so each
/// decision is independent of every other one and of how calls interleave.
fn unit_interval(seed: u64, n: u64) -> f64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits fill an f64's mantissa exactly.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What a [`FaultRule`]'s predicate sees of a call: the RPC, the collection, the decoded
/// request message, the caller's address and metadata, and the call's request and connection
/// ids. A [`Call`](super::Call) in the [`CallLog`](super::CallLog) shows the same.
///
/// ```
/// use qdrant_client::qdrant::UpsertPoints;
/// use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
///
/// // Fail only upserts that carry more than 100 points.
/// let rule = FaultRule::new(Fault::unavailable())
///     .rpc(Rpc::Upsert)
///     .when(|call| call.message::<UpsertPoints>().is_some_and(|m| m.points.len() > 100));
/// # let _ = rule;
/// ```
pub struct FaultRequest<'a> {
    pub(crate) id: u64,
    pub(crate) connection_id: u64,
    pub(crate) rpc: Rpc,
    pub(crate) collection: Option<&'a str>,
    pub(crate) message: &'a (dyn Any + Send + Sync),
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) metadata: &'a MetadataMap,
}

impl<'a> FaultRequest<'a> {
    /// The call's request id, as [`Call::id`](super::Call::id) will show it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id of the connection the call came on, as
    /// [`Call::connection_id`](super::Call::connection_id) shows it: faults can pick one
    /// connection.
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The RPC called.
    pub fn rpc(&self) -> Rpc {
        self.rpc
    }

    /// The request's `collection_name`, for the RPCs that have one.
    pub fn collection(&self) -> Option<&'a str> {
        self.collection
    }

    /// The decoded request as qdrant-client's message type `T` (`SearchPoints`, `UpsertPoints`…),
    /// or `None` if the call carries another type.
    pub fn message<T: Any>(&self) -> Option<&'a T> {
        self.message.downcast_ref::<T>()
    }

    /// The decoded request, to downcast by hand.
    pub fn message_any(&self) -> &'a (dyn Any + Send + Sync) {
        self.message
    }

    /// The caller's address (through a [`ChaosProxy`](crate::ChaosProxy): the proxy's).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The request's gRPC metadata (headers such as `api-key`).
    pub fn metadata(&self) -> &'a MetadataMap {
        self.metadata
    }

    /// How long the client said it would wait (its `grpc-timeout` header), if it said.
    pub fn grpc_timeout(&self) -> Option<Duration> {
        parse_grpc_timeout(self.metadata.get("grpc-timeout")?.to_str().ok()?)
    }
}

/// A `grpc-timeout` header value (`<up to 8 digits><unit>`, unit one of `H M S m u n`, as gRPC
/// over HTTP/2 defines it) as a duration; `None` when malformed.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_testkit::faults::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("1500000u"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_grpc_timeout("5x"), None);
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

impl fmt::Debug for FaultRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultRequest")
            .field("id", &self.id)
            .field("connection_id", &self.connection_id)
            .field("rpc", &self.rpc)
            .field("collection", &self.collection)
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

pub(crate) type Predicate = Arc<dyn Fn(&FaultRequest<'_>) -> bool + Send + Sync>;

/// One rule of a [`FaultPlan`]: which calls it matches, when it acts, and what it does.
///
/// A rule matches a call when every filter set on it agrees: the RPC ([`rpc`](Self::rpc),
/// [`writes`](Self::writes), [`reads`](Self::reads)), the collection
/// ([`collection`](Self::collection)), the time window since the plan was installed
/// ([`active_for`](Self::active_for), [`active_after`](Self::active_after),
/// [`active_between`](Self::active_between)) and the predicate ([`when`](Self::when)). No
/// filter means every call. Of the matching calls, the [`Trigger`] picks those it acts on
/// (default: all).
///
/// A [`rate_limit`](Self::rate_limit) rule instead lets calls through until a per-collection
/// budget is spent, then answers `RESOURCE_EXHAUSTED` with the time until the next call is
/// allowed.
#[derive(Clone)]
pub struct FaultRule {
    pub(crate) action: Action,
    pub(crate) rpcs: Vec<Rpc>,
    pub(crate) writes: Option<bool>,
    pub(crate) collections: Vec<String>,
    pub(crate) from: Duration,
    pub(crate) until: Option<Duration>,
    pub(crate) predicate: Option<Predicate>,
}

/// What a rule does to the calls it picks.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    Inject { fault: Arc<Fault>, trigger: Trigger },
    RateLimit { calls: u32, per: Duration },
}

impl FaultRule {
    /// A rule that injects `fault` into every matching call.
    pub fn new(fault: Fault) -> Self {
        FaultRule::with_action(Action::Inject {
            fault: Arc::new(fault),
            trigger: Trigger::Always,
        })
    }

    /// Qdrant's strict-mode rate limit: each collection may take `calls` calls per `per` (a
    /// token bucket holding `calls` tokens, refilled evenly over `per`, so bursts of up to
    /// `calls` pass); a call over the budget answers `RESOURCE_EXHAUSTED` with `retry-after`
    /// set to the whole seconds, rounded up, until a token is back. Calls with no collection
    /// share one bucket. Narrow it like any rule, e.g. to writes with [`writes`](Self::writes).
    ///
    /// `calls` of 0 rejects every call (retry after `per`).
    pub fn rate_limit(calls: u32, per: Duration) -> Self {
        FaultRule::with_action(Action::RateLimit { calls, per })
    }

    fn with_action(action: Action) -> Self {
        FaultRule {
            action,
            rpcs: Vec::new(),
            writes: None,
            collections: Vec::new(),
            from: Duration::ZERO,
            until: None,
            predicate: None,
        }
    }

    /// Matches `rpc` (call again to add more). Default: every RPC.
    pub fn rpc(mut self, rpc: Rpc) -> Self {
        self.rpcs.push(rpc);
        self
    }

    /// Matches each of `rpcs`, as [`rpc`](Self::rpc) for each.
    pub fn rpcs(mut self, rpcs: impl IntoIterator<Item = Rpc>) -> Self {
        self.rpcs.extend(rpcs);
        self
    }

    /// Matches only RPCs that change state ([`Rpc::is_write`]).
    pub fn writes(mut self) -> Self {
        self.writes = Some(true);
        self
    }

    /// Matches only RPCs that do not change state.
    pub fn reads(mut self) -> Self {
        self.writes = Some(false);
        self
    }

    /// Matches calls on collection `name` (call again to add more). Default: any collection,
    /// and calls without one.
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collections.push(name.into());
        self
    }

    /// Matches only calls for which `predicate` returns true. It runs on the server's task for
    /// every call that passed the other filters, so keep it cheap and never block in it.
    pub fn when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&FaultRequest<'_>) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Chooses which matching calls the fault hits. Default: [`Trigger::Always`]. No effect on a
    /// rate limit.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        if let Action::Inject { trigger: t, .. } = &mut self.action {
            *t = trigger;
        }
        self
    }

    /// Hits the first `n` matching calls only ([`Trigger::First`]).
    pub fn first(self, n: u64) -> Self {
        self.trigger(Trigger::First(n))
    }

    /// Hits every `n`th matching call ([`Trigger::EveryNth`]); `0` hits none.
    pub fn every_nth(self, n: u64) -> Self {
        self.trigger(Trigger::EveryNth(n))
    }

    /// Hits every matching call after the first `n` ([`Trigger::After`]).
    pub fn after(self, n: u64) -> Self {
        self.trigger(Trigger::After(n))
    }

    /// Hits each matching call with probability `p`, reproducibly for a `seed`
    /// ([`Trigger::Probability`]).
    pub fn probability(self, p: f64, seed: u64) -> Self {
        self.trigger(Trigger::Probability { p, seed })
    }

    /// Acts only during the first `duration` after the plan was installed (tokio's clock).
    pub fn active_for(self, duration: Duration) -> Self {
        self.active_between(Duration::ZERO, duration)
    }

    /// Acts only from `delay` after the plan was installed on (tokio's clock).
    pub fn active_after(mut self, delay: Duration) -> Self {
        self.from = delay;
        self.until = None;
        self
    }

    /// Acts only from `start` to `end` (excluded) after the plan was installed (tokio's clock).
    /// Outside the window the rule neither matches nor counts calls.
    pub fn active_between(mut self, start: Duration, end: Duration) -> Self {
        self.from = start;
        self.until = Some(end);
        self
    }

    /// The fault this rule injects (`None` for a rate limit).
    pub fn fault(&self) -> Option<&Fault> {
        match &self.action {
            Action::Inject { fault, .. } => Some(fault),
            Action::RateLimit { .. } => None,
        }
    }

    /// Whether the call passes this rule's RPC, collection and window filters, `elapsed` after
    /// the plan was installed. The predicate is checked separately, last, being the dearest.
    pub(crate) fn admits(&self, rpc: Rpc, collection: Option<&str>, elapsed: Duration) -> bool {
        (self.rpcs.is_empty() || self.rpcs.contains(&rpc))
            && self.writes.is_none_or(|writes| writes == rpc.is_write())
            && (self.collections.is_empty()
                || collection.is_some_and(|name| self.collections.iter().any(|c| c == name)))
            && elapsed >= self.from
            && self.until.is_none_or(|until| elapsed < until)
    }
}

impl fmt::Debug for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultRule")
            .field("action", &self.action)
            .field("rpcs", &self.rpcs)
            .field("writes", &self.writes)
            .field("collections", &self.collections)
            .field("from", &self.from)
            .field("until", &self.until)
            .field("predicate", &self.predicate.as_ref().map(|_| "Fn"))
            .finish()
    }
}

/// The faults a [`TestServer`](crate::TestServer) injects: an ordered list of [`FaultRule`]s.
///
/// For each call the rules are tried in order; the first that matches and whose trigger picks
/// the call decides its fate, and later rules never see that call (nor count it). A call no
/// rule takes is served normally. Install a plan with
/// [`TestServer::set_faults`](crate::TestServer::set_faults) or a [`Faults`](super::Faults)
/// handle; installing starts its time windows and counters afresh.
///
/// ```
/// use std::time::Duration;
/// use qdrant_client::qdrant::collections_client::CollectionsClient;
/// use qdrant_client::qdrant::points_client::PointsClient;
/// use qdrant_client::qdrant::{
///     CountPointsBuilder, CreateCollectionBuilder, Distance, VectorParamsBuilder,
/// };
/// use qdrant_tower_testkit::TestServer;
/// use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::start().await?;
/// let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
/// CollectionsClient::new(channel.clone())
///     .create(
///         CreateCollectionBuilder::new("books")
///             .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
///             .build(),
///     )
///     .await?;
///
/// // The first two counts on `books` fail as if the shard were down; writes are rate-limited.
/// server.set_faults(
///     FaultPlan::new()
///         .rule(FaultRule::new(Fault::unavailable()).rpc(Rpc::Count).collection("books").first(2))
///         .rule(FaultRule::rate_limit(10, Duration::from_secs(1)).writes()),
/// );
///
/// let mut points = PointsClient::new(channel);
/// let count = || CountPointsBuilder::new("books").build();
/// for _ in 0..2 {
///     let status = points.count(count()).await.unwrap_err();
///     assert_eq!(status.code(), tonic::Code::Unavailable);
/// }
/// assert!(points.count(count()).await.is_ok());
/// assert_eq!(server.calls().count(Rpc::Count, "books"), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    pub(crate) rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// An empty plan: every call is served normally.
    pub fn new() -> Self {
        FaultPlan::default()
    }

    /// Adds `rule` after the rules already there.
    pub fn rule(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Whether the plan has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl From<FaultRule> for FaultPlan {
    fn from(rule: FaultRule) -> Self {
        FaultPlan::new().rule(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(trigger: &Trigger, calls: u64) -> Vec<u64> {
        (1..=calls).filter(|&n| trigger.fires(n)).collect()
    }

    #[test]
    fn counting_triggers_pick_the_calls_they_name() {
        assert_eq!(fired(&Trigger::Always, 4), vec![1, 2, 3, 4]);
        assert_eq!(fired(&Trigger::First(2), 5), vec![1, 2]);
        assert_eq!(fired(&Trigger::EveryNth(3), 10), vec![3, 6, 9]);
        assert_eq!(fired(&Trigger::EveryNth(0), 10), Vec::<u64>::new());
        assert_eq!(fired(&Trigger::After(3), 5), vec![4, 5]);
    }

    #[test]
    fn probability_is_reproducible_per_seed_and_close_to_p() {
        let trigger = Trigger::Probability { p: 0.3, seed: 42 };
        let first = fired(&trigger, 10_000);
        assert_eq!(first, fired(&trigger, 10_000), "same seed, same calls");
        let other = fired(&Trigger::Probability { p: 0.3, seed: 43 }, 10_000);
        assert_ne!(first, other, "another seed picks other calls");
        let share = first.len() as f64 / 10_000.0;
        assert!((0.28..0.32).contains(&share), "{share}");
        assert!(fired(&Trigger::Probability { p: 0.0, seed: 1 }, 1000).is_empty());
        assert_eq!(
            fired(&Trigger::Probability { p: 1.0, seed: 1 }, 1000).len(),
            1000
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(2001)), 3);
        let status = Fault::rate_limited(Duration::from_millis(1500))
            .to_status()
            .unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get(RETRY_AFTER_HEADER).unwrap(), "2");
    }

    #[test]
    fn rules_filter_by_rpc_kind_collection_and_window() {
        let second = Duration::from_secs(1);
        let rule = FaultRule::new(Fault::internal())
            .rpc(Rpc::Search)
            .collection("a")
            .active_between(second, 3 * second);
        assert!(rule.admits(Rpc::Search, Some("a"), 2 * second));
        assert!(!rule.admits(Rpc::Search, Some("b"), 2 * second));
        assert!(!rule.admits(Rpc::Search, None, 2 * second));
        assert!(!rule.admits(Rpc::Count, Some("a"), 2 * second));
        assert!(!rule.admits(Rpc::Search, Some("a"), Duration::ZERO));
        assert!(!rule.admits(Rpc::Search, Some("a"), 3 * second));

        let writes = FaultRule::new(Fault::internal()).writes();
        assert!(writes.admits(Rpc::Upsert, None, Duration::ZERO));
        assert!(!writes.admits(Rpc::Search, None, Duration::ZERO));
        let anything = FaultRule::new(Fault::internal());
        assert!(anything.admits(Rpc::HealthCheck, None, Duration::from_secs(1000)));
    }
}
