//! `VectorError`: every failure of a Qdrant call, classified once.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use qdrant_tower_layers::{
    AttemptTimedOut, CircuitOpen, Classify, DeadlineExceeded, ErrorKind, Unhealthy,
};
use tonic::{Code, Status};

/// The header real Qdrant sets on `RESOURCE_EXHAUSTED` when its disk is full.
pub const INSUFFICIENT_STORAGE_HEADER: &str = "qdrant-insufficient-storage";
/// The header real Qdrant sets on `RESOURCE_EXHAUSTED` when it rate-limits (whole seconds).
pub const RETRY_AFTER_HEADER: &str = "retry-after";
/// What a tonic server (Qdrant, the testkit) answers, with `CANCELLED`, when the
/// `grpc-timeout` a client sent runs out (`tonic::TimeoutExpired`'s message).
const SERVER_TIMEOUT_MESSAGE: &str = "Timeout expired";

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed call to Qdrant: what kind of failure, which operation on which collection, and
/// what the server (or the transport) said.
///
/// The [`ErrorKind`] decides what the layers do with it (see [`Classify`]). The gRPC code and
/// message are kept as the server sent them; `Display` shows all of it in one line:
///
/// ```text
/// search on collection `docs` failed (not_found, NOT_FOUND): Not found: Collection `docs` doesn't exist!
/// ```
///
/// Secrets never appear here: the API key travels only in request metadata, which errors do
/// not carry.
pub struct VectorError(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    operation: &'static str,
    collection: Option<String>,
    code: Option<Code>,
    message: String,
    retry_after: Option<Duration>,
    maybe_sent: bool,
    attempts: u32,
    invalid: Option<InvalidRequest>,
    source: Option<BoxError>,
}

impl VectorError {
    /// A new error of `kind` for `operation` with a message; the other fields start empty,
    /// and the request counts as possibly sent.
    pub fn new(kind: ErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        VectorError(Box::new(Inner {
            kind,
            operation,
            collection: None,
            code: None,
            message: message.into(),
            retry_after: None,
            maybe_sent: true,
            attempts: 1,
            invalid: None,
            source: None,
        }))
    }

    /// The error for a request rejected by validation before anything was sent.
    pub fn invalid(operation: &'static str, collection: Option<&str>, why: InvalidRequest) -> Self {
        let mut error = VectorError::new(ErrorKind::InvalidRequest, operation, why.to_string())
            .with_collection(collection);
        error.0.maybe_sent = false;
        error.0.invalid = Some(why);
        error
    }

    /// Classifies a gRPC status from a call of `operation` on `collection`.
    ///
    /// A status the server sent is mapped by its code (and, for `RESOURCE_EXHAUSTED`, by
    /// Qdrant's `retry-after` and `qdrant-insufficient-storage` headers). A status tonic made
    /// from a transport failure carries that failure as its source; it is mapped by what the
    /// source chain shows: a failed connect or an HTTP/2 `REFUSED_STREAM` or graceful `GOAWAY`
    /// prove the request was never sent; a client-side timeout is `Timeout`; any other broken
    /// connection is `Connect`, and the request may have been applied.
    pub fn from_status(status: Status, operation: &'static str, collection: Option<&str>) -> Self {
        let code = status.code();
        let transport = status.source().and_then(TransportFailure::find);
        let (kind, maybe_sent) = match transport {
            Some(TransportFailure::NotSent { kind }) => (kind, false),
            Some(TransportFailure::ClientTimeout) => (ErrorKind::Timeout, true),
            Some(TransportFailure::Broken) => (ErrorKind::Connect, true),
            None => (kind_of_code(code, &status), true),
        };
        let retry_after = match kind {
            ErrorKind::RateLimited => parse_retry_after(&status),
            _ => None,
        };
        let message = status.message().to_owned();
        let mut error = VectorError::new(kind, operation, message).with_collection(collection);
        error.0.code = Some(code);
        error.0.retry_after = retry_after;
        error.0.maybe_sent = maybe_sent;
        error.0.source = Some(Box::new(status));
        error
    }

    /// Sets the collection the failed request addressed.
    pub fn with_collection(mut self, collection: Option<&str>) -> Self {
        self.0.collection = collection.map(str::to_owned);
        self
    }

    /// Names the request a layer's rejection (open breaker, unhealthy backend, deadline)
    /// failed, which the layer did not know: `operation` and `collection` are set only if
    /// the error has no operation yet. The typed client does this for every call.
    ///
    /// ```
    /// use qdrant_tower_client::VectorError;
    /// use qdrant_tower_layers::ErrorKind;
    ///
    /// let rejected = VectorError::new(ErrorKind::CircuitOpen, "", "circuit `qdrant` is open")
    ///     .for_request("search", Some("docs"));
    /// assert_eq!(
    ///     rejected.to_string(),
    ///     "search on collection `docs` failed (circuit_open): circuit `qdrant` is open"
    /// );
    /// ```
    pub fn for_request(mut self, operation: &'static str, collection: Option<&str>) -> Self {
        if self.0.operation.is_empty() {
            self.0.operation = operation;
            if self.0.collection.is_none() {
                self.0.collection = collection.map(str::to_owned);
            }
        }
        self
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// Marks whether the request may have reached the server (see [`VectorError::maybe_sent`]).
    pub fn with_maybe_sent(mut self, maybe_sent: bool) -> Self {
        self.0.maybe_sent = maybe_sent;
        self
    }

    /// A `CANCELLED` that came back when the call's own time had run out is that time running
    /// out: whichever of the server's answer and the local timer fires first, a deadline ends
    /// as [`ErrorKind::Timeout`].
    pub(crate) fn cancelled_at_deadline(mut self) -> Self {
        if self.0.kind == ErrorKind::Cancelled {
            self.0.kind = ErrorKind::Timeout;
        }
        self
    }

    /// Sets the server's hint on when to try again.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.0.retry_after = retry_after;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether the request may have reached Qdrant, and so may have been applied, in any
    /// attempt of the call.
    ///
    /// `false` only when every attempt is proven never sent: rejected by validation, by an
    /// open breaker or a health gate, or failed before the request left (a refused
    /// connection, HTTP/2 `REFUSED_STREAM`, a graceful `GOAWAY`). Behind a
    /// [`RetryLayer`](qdrant_tower_layers::retry::RetryLayer) it describes the whole call, not
    /// only the last attempt: a write whose first attempt timed out and whose retry was then
    /// rejected by an open breaker says `true`. This is what to check before re-sending a
    /// write that is not idempotent.
    ///
    /// ```
    /// use qdrant_tower_client::VectorError;
    /// use qdrant_tower_layers::ErrorKind;
    ///
    /// let refused = VectorError::new(ErrorKind::Connect, "upsert", "connection refused")
    ///     .with_maybe_sent(false);
    /// assert!(!refused.maybe_sent());
    /// assert_eq!(refused.attempts(), 1);
    /// ```
    pub fn maybe_sent(&self) -> bool {
        self.0.maybe_sent
    }

    /// How many attempts the call made: 1 without a retry layer; behind a
    /// [`RetryLayer`](qdrant_tower_layers::retry::RetryLayer), every attempt it started, those
    /// rejected locally (open breaker, unhealthy backend) included.
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// The server's own word on when to try again (`retry-after` on `RESOURCE_EXHAUSTED`), or
    /// an open breaker's time until it admits trial calls.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// The operation that failed (`"search"`, `"upsert"`…).
    pub fn operation(&self) -> &'static str {
        self.0.operation
    }

    /// The collection the request addressed, if it had one.
    pub fn collection(&self) -> Option<&str> {
        self.0.collection.as_deref()
    }

    /// The gRPC status code, when the failure came as a status.
    pub fn code(&self) -> Option<Code> {
        self.0.code
    }

    /// The server's (or transport's) message, as sent.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// What validation found wrong, when the request was rejected before sending.
    pub fn invalid_request(&self) -> Option<&InvalidRequest> {
        self.0.invalid.as_ref()
    }

    /// The original gRPC status, when the failure came as one.
    pub fn status(&self) -> Option<&Status> {
        self.0.source.as_deref()?.downcast_ref::<Status>()
    }
}

/// A breaker's rejection as a `VectorError`, so a breaker over [`QdrantService`] keeps the
/// stack's error type. The operation is not known to the breaker; the message names the
/// breaker and when it admits trial calls again.
///
/// [`QdrantService`]: crate::QdrantService
impl From<CircuitOpen> for VectorError {
    fn from(open: CircuitOpen) -> Self {
        VectorError::new(ErrorKind::CircuitOpen, "", open.to_string())
            .with_retry_after(open.retry_in)
            .with_maybe_sent(false)
            .with_source(open)
    }
}

/// A health gate's rejection as a `VectorError`: [`ErrorKind::Unhealthy`], never sent. The
/// operation is not known to the gate; the message names the health check.
impl From<Unhealthy> for VectorError {
    fn from(unhealthy: Unhealthy) -> Self {
        VectorError::new(ErrorKind::Unhealthy, "", unhealthy.to_string())
            .with_maybe_sent(false)
            .with_source(unhealthy)
    }
}

/// A deadline or retry layer's deadline as a `VectorError` ([`ErrorKind::Timeout`]): the call
/// ran out of time with work in flight, which may have reached the server, unless the deadline
/// had passed before anything was started (`attempts == Some(0)`).
impl From<DeadlineExceeded> for VectorError {
    fn from(exceeded: DeadlineExceeded) -> Self {
        let maybe_sent = exceeded.maybe_sent();
        VectorError::new(ErrorKind::Timeout, "", exceeded.to_string())
            .with_maybe_sent(maybe_sent)
            .with_source(exceeded)
    }
}

/// An attempt timeout as a `VectorError` ([`ErrorKind::Timeout`]): the attempt may have
/// reached the server, unless its limit was zero (the deadline had passed before it started).
impl From<AttemptTimedOut> for VectorError {
    fn from(timed_out: AttemptTimedOut) -> Self {
        let maybe_sent = timed_out.maybe_sent();
        VectorError::new(ErrorKind::Timeout, "", timed_out.to_string())
            .with_maybe_sent(maybe_sent)
            .with_source(timed_out)
    }
}

/// A boxed error — what `tower::buffer::Buffer` and other type-erasing middleware return — as
/// a `VectorError`: the `VectorError` inside if it is one, else classified by its source chain
/// (as `Classify for BoxError` does: a breaker's or health gate's rejection, a timeout, or
/// [`ErrorKind::Internal`]). So a stack behind a `Buffer` can still answer `VectorError`s
/// (`buffered.map_err(VectorError::from)`), and [`Client`](../qdrant_tower/struct.Client.html)
/// takes it as it is.
impl From<BoxError> for VectorError {
    fn from(error: BoxError) -> Self {
        match error.downcast::<VectorError>() {
            Ok(error) => *error,
            Err(other) => {
                let kind = Classify::kind(&other);
                let retry_after = Classify::retry_after(&other);
                let maybe_sent = Classify::maybe_sent(&other);
                VectorError::new(kind, "", other.to_string())
                    .with_retry_after(retry_after)
                    .with_maybe_sent(maybe_sent)
                    .with_source(other)
            }
        }
    }
}

impl Classify for VectorError {
    fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    fn maybe_sent(&self) -> bool {
        self.0.maybe_sent
    }

    fn record_attempts(&mut self, attempts: u32, maybe_sent: bool) {
        self.0.attempts = attempts;
        self.0.maybe_sent = maybe_sent;
    }
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        // A layer's rejection does not know the operation.
        f.write_str(if inner.operation.is_empty() {
            "call"
        } else {
            inner.operation
        })?;
        if let Some(collection) = &inner.collection {
            write!(f, " on collection `{collection}`")?;
        }
        write!(f, " failed ({}", inner.kind)?;
        if let Some(code) = inner.code {
            write!(f, ", {}", code_name(code))?;
        }
        f.write_str(")")?;
        if !inner.message.is_empty() {
            write!(f, ": {}", inner.message)?;
        }
        if let Some(after) = inner.retry_after {
            write!(f, " (retry after {after:?})")?;
        }
        if inner.attempts > 1 {
            write!(f, " [{} attempts; ", inner.attempts)?;
            f.write_str(if inner.maybe_sent {
                "may have been applied]"
            } else {
                "none was sent]"
            })?;
        }
        Ok(())
    }
}

impl fmt::Debug for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        f.debug_struct("VectorError")
            .field("kind", &inner.kind)
            .field("operation", &inner.operation)
            .field("collection", &inner.collection)
            .field("code", &inner.code)
            .field("message", &inner.message)
            .field("retry_after", &inner.retry_after)
            .field("maybe_sent", &inner.maybe_sent)
            .field("attempts", &inner.attempts)
            .field("invalid", &inner.invalid)
            .finish_non_exhaustive()
    }
}

impl StdError for VectorError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// What validation found wrong with a request, before it was sent.
///
/// Each variant names the field and, where there is one, the offending value or position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// `collection_name` (or an alias) is empty.
    #[error("invalid request: field `{field}` is empty; give a collection name")]
    EmptyCollectionName {
        /// The field that was empty.
        field: &'static str,
    },
    /// A vector has no components.
    #[error("invalid request: {location} is an empty vector")]
    EmptyVector {
        /// Where: the field, point id and vector name.
        location: String,
    },
    /// A vector component is NaN or infinite.
    #[error("invalid request: {location} has non-finite component {value} at index {index}")]
    NonFiniteVector {
        /// Where: the field, point id and vector name.
        location: String,
        /// The component's index.
        index: usize,
        /// The component's value (NaN or ±inf).
        value: f32,
    },
    /// A sparse vector's indices and values differ in length.
    #[error("invalid request: {location} has {indices} indices but {values} values")]
    SparseLengthMismatch {
        /// Where: the field, point id and vector name.
        location: String,
        /// Number of indices.
        indices: usize,
        /// Number of values.
        values: usize,
    },
    /// A limit of zero, which can only return nothing.
    #[error("invalid request: field `{field}` is 0; ask for at least one result")]
    ZeroLimit {
        /// The field that was zero.
        field: &'static str,
    },
    /// A point id is not a valid UUID (Qdrant ids are unsigned integers or UUIDs).
    #[error("invalid request: {field} `{value}` is not a valid UUID: {reason}")]
    MalformedUuid {
        /// The field holding the id.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A point has no id.
    #[error("invalid request: point #{index} in `{field}` has no id")]
    MissingPointId {
        /// The list of points.
        field: &'static str,
        /// The point's position in the list.
        index: usize,
    },
    /// More points in one request than the configured maximum.
    #[error(
        "invalid request: `{field}` holds {points} points, over the limit of {max}; split it (see upsert_chunked)"
    )]
    TooManyPoints {
        /// The list of points.
        field: &'static str,
        /// How many were given.
        points: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The encoded request is larger than the configured maximum.
    #[error(
        "invalid request: {operation} encodes to {bytes} bytes, over the limit of {max}; split it (see upsert_chunked)"
    )]
    TooLarge {
        /// The operation.
        operation: &'static str,
        /// The request's encoded size.
        bytes: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// What a transport failure (as opposed to a status the server sent) tells about the request.
enum TransportFailure {
    /// Proven never sent: safe to retry any request.
    NotSent { kind: ErrorKind },
    /// The client's own deadline (`grpc-timeout`) expired.
    ClientTimeout,
    /// The connection broke; the request may or may not have been applied.
    Broken,
}

impl TransportFailure {
    fn find(error: &(dyn StdError + 'static)) -> Option<Self> {
        let mut found = TransportFailure::Broken;
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<tonic::ConnectError>() {
                return Some(TransportFailure::NotSent {
                    kind: ErrorKind::Connect,
                });
            }
            if error.is::<tonic::TimeoutExpired>() {
                found = TransportFailure::ClientTimeout;
            }
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return Some(TransportFailure::NotSent {
                    kind: ErrorKind::Connect,
                });
            }
            if let Some(h2) = error.downcast_ref::<h2::Error>() {
                // REFUSED_STREAM: the server refused the stream before processing it. A remote
                // graceful GOAWAY fails only the streams past its last-processed id, which the
                // server promises it never looked at (RFC 9113, 6.8).
                if h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (h2.is_go_away()
                        && h2.is_remote()
                        && h2.reason() == Some(h2::Reason::NO_ERROR))
                {
                    return Some(TransportFailure::NotSent {
                        kind: ErrorKind::Unavailable,
                    });
                }
            }
            next = error.source();
        }
        Some(found)
    }
}

fn kind_of_code(code: Code, status: &Status) -> ErrorKind {
    match code {
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => ErrorKind::Internal,
        // A tonic server (Qdrant is one) answers CANCELLED "Timeout expired" when the
        // `grpc-timeout` the client sent runs out: the call timed out, it was not cancelled.
        Code::Cancelled if status.message() == SERVER_TIMEOUT_MESSAGE => ErrorKind::Timeout,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented => ErrorKind::InvalidRequest,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::ResourceExhausted if status.metadata().contains_key(INSUFFICIENT_STORAGE_HEADER) => {
            ErrorKind::InsufficientStorage
        }
        Code::ResourceExhausted => ErrorKind::RateLimited,
        // ABORTED is a conflict that a later attempt may not meet.
        Code::Unavailable | Code::Aborted => ErrorKind::Unavailable,
    }
}

/// Parses `retry-after` as (possibly fractional) seconds. Qdrant sends whole seconds; an HTTP
/// date or garbage is ignored rather than guessed at.
fn parse_retry_after(status: &Status) -> Option<Duration> {
    let value = status.metadata().get(RETRY_AFTER_HEADER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// The canonical upper-case name of a gRPC code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn status_with(code: Code, headers: &[(&'static str, &'static str)]) -> Status {
        let mut metadata = MetadataMap::new();
        for (key, value) in headers {
            metadata.insert(*key, value.parse().unwrap());
        }
        Status::with_metadata(code, "server said no", metadata)
    }

    #[test]
    fn server_statuses_map_to_the_taxonomy() {
        let table = [
            (Code::NotFound, ErrorKind::NotFound),
            (Code::InvalidArgument, ErrorKind::InvalidRequest),
            (Code::FailedPrecondition, ErrorKind::InvalidRequest),
            (Code::OutOfRange, ErrorKind::InvalidRequest),
            (Code::Unimplemented, ErrorKind::InvalidRequest),
            (Code::AlreadyExists, ErrorKind::AlreadyExists),
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::Aborted, ErrorKind::Unavailable),
            (Code::DeadlineExceeded, ErrorKind::Timeout),
            (Code::Internal, ErrorKind::Internal),
            (Code::Unknown, ErrorKind::Internal),
            (Code::DataLoss, ErrorKind::Internal),
            (Code::Unauthenticated, ErrorKind::Unauthenticated),
            (Code::PermissionDenied, ErrorKind::PermissionDenied),
            (Code::Cancelled, ErrorKind::Cancelled),
            (Code::ResourceExhausted, ErrorKind::RateLimited),
        ];
        for (code, kind) in table {
            let error = VectorError::from_status(status_with(code, &[]), "search", Some("docs"));
            assert_eq!(error.kind(), kind, "{code:?}");
            assert!(
                error.maybe_sent(),
                "a status from the server means it got the request"
            );
        }
    }

    #[test]
    fn retry_after_is_parsed_only_for_rate_limits() {
        let limited = VectorError::from_status(
            status_with(Code::ResourceExhausted, &[("retry-after", "7")]),
            "upsert",
            Some("docs"),
        );
        assert_eq!(limited.kind(), ErrorKind::RateLimited);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));

        let garbage = VectorError::from_status(
            status_with(Code::ResourceExhausted, &[("retry-after", "soon")]),
            "upsert",
            None,
        );
        assert_eq!(garbage.retry_after(), None);

        let unavailable = VectorError::from_status(
            status_with(Code::Unavailable, &[("retry-after", "7")]),
            "upsert",
            None,
        );
        assert_eq!(unavailable.retry_after(), None);
    }

    #[test]
    fn full_disk_is_not_a_rate_limit() {
        let error = VectorError::from_status(
            status_with(
                Code::ResourceExhausted,
                &[("qdrant-insufficient-storage", "1"), ("retry-after", "1")],
            ),
            "upsert",
            Some("docs"),
        );
        assert_eq!(error.kind(), ErrorKind::InsufficientStorage);
        assert!(!error.kind().is_transient());
        assert_eq!(error.retry_after(), None);
    }

    #[test]
    fn display_names_operation_collection_kind_and_code() {
        let error = VectorError::from_status(
            Status::not_found("Not found: Collection `docs` doesn't exist!"),
            "search",
            Some("docs"),
        );
        assert_eq!(
            error.to_string(),
            "search on collection `docs` failed (not_found, NOT_FOUND): Not found: Collection `docs` doesn't exist!"
        );
        assert!(error.status().is_some());
    }

    #[test]
    fn a_breaker_rejection_keeps_its_kind_and_hint() {
        let open = CircuitOpen {
            name: "qdrant".into(),
            retry_in: Some(Duration::from_secs(12)),
        };
        let error = VectorError::from(open);
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(12)));
        assert!(!error.maybe_sent());
        assert!(
            error
                .to_string()
                .starts_with("call failed (circuit_open): circuit breaker `qdrant` is open"),
            "{error}"
        );
    }

    #[test]
    fn layer_rejections_and_timeouts_keep_kind_source_and_maybe_sent() {
        let unhealthy = VectorError::from(Unhealthy {
            name: "qdrant".into(),
            failed_probes: 3,
            waited: Duration::ZERO,
        });
        assert_eq!(unhealthy.kind(), ErrorKind::Unhealthy);
        assert!(!unhealthy.maybe_sent());
        assert!(unhealthy.source().is_some_and(|s| s.is::<Unhealthy>()));
        assert!(unhealthy.to_string().contains("`qdrant`"), "{unhealthy}");

        let timed_out = VectorError::from(AttemptTimedOut {
            limit: Duration::from_millis(250),
            by_deadline: false,
        });
        assert_eq!(timed_out.kind(), ErrorKind::Timeout);
        assert!(timed_out.maybe_sent());
        assert!(
            timed_out
                .source()
                .is_some_and(|s| s.is::<AttemptTimedOut>())
        );
        let not_started = VectorError::from(AttemptTimedOut {
            limit: Duration::ZERO,
            by_deadline: true,
        });
        assert!(!not_started.maybe_sent());
    }

    #[test]
    fn refused_stream_proves_the_request_was_not_sent() {
        let status = Status::from_error(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        let error = VectorError::from_status(status, "upsert", Some("docs"));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(!error.maybe_sent());
    }

    #[test]
    fn client_timeout_is_a_timeout_not_a_cancellation() {
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(status.code(), Code::Cancelled, "tonic calls it cancelled");
        let error = VectorError::from_status(status, "search", Some("docs"));
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.maybe_sent());
    }

    #[test]
    fn a_servers_timeout_expired_is_a_timeout_not_a_cancellation() {
        // What a tonic server (Qdrant, the testkit) answers when the client's grpc-timeout
        // runs out on its side.
        let error =
            VectorError::from_status(Status::cancelled("Timeout expired"), "search", Some("docs"));
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.maybe_sent(), "the server had the request");
        assert_eq!(
            error.code(),
            Some(Code::Cancelled),
            "the code is kept as sent"
        );
    }

    #[test]
    fn the_whole_calls_record_replaces_the_last_attempts() {
        let mut error = VectorError::from(CircuitOpen {
            name: "qdrant".into(),
            retry_in: None,
        });
        assert_eq!((error.attempts(), error.maybe_sent()), (1, false));
        error.record_attempts(3, true);
        assert_eq!((error.attempts(), error.maybe_sent()), (3, true));
        assert!(
            error
                .to_string()
                .ends_with("[3 attempts; may have been applied]"),
            "{error}"
        );
        assert!(format!("{error:?}").contains("attempts: 3"), "{error:?}");
    }

    #[test]
    fn a_boxed_error_gives_back_the_vector_error_inside_or_is_classified() {
        let inner = VectorError::new(ErrorKind::NotFound, "search", "no such collection");
        let boxed: BoxError = Box::new(inner);
        let error = VectorError::from(boxed);
        assert_eq!(
            (error.kind(), error.operation()),
            (ErrorKind::NotFound, "search")
        );

        let open: BoxError = Box::new(CircuitOpen {
            name: "qdrant".into(),
            retry_in: Some(Duration::from_secs(3)),
        });
        let error = VectorError::from(open);
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert!(!error.maybe_sent());

        let unknown: BoxError = "the buffer's worker is gone".into();
        let error = VectorError::from(unknown);
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(error.to_string().contains("worker is gone"), "{error}");
    }

    #[test]
    fn a_broken_connection_is_ambiguous() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let status = Status::from_error(Box::new(reset));
        let error = VectorError::from_status(status, "upsert", Some("docs"));
        assert_eq!(error.kind(), ErrorKind::Connect);
        assert!(error.maybe_sent());

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = VectorError::from_status(Status::from_error(Box::new(refused)), "upsert", None);
        assert_eq!(error.kind(), ErrorKind::Connect);
        assert!(!error.maybe_sent());
    }
}
