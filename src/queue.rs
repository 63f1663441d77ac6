//! A durable write-behind queue: when Qdrant cannot take a write, the write is kept on disk
//! and applied when Qdrant is back — opt-in per collection, never a fake success, never a
//! silent drop.
//!
//! ```no_run
//! use qdrant_tower::queue::{QueueConfig, WriteBehindLayer};
//! use qdrant_tower::qdrant::{PointStruct, UpsertPointsBuilder};
//! use qdrant_tower::{Client, QdrantStack, VectorResponse};
//! use tower::Layer;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = QdrantStack::builder().endpoint("http://localhost:6334").build()?;
//! let queue = WriteBehindLayer::open(
//!     QueueConfig::new("/var/lib/myapp/qdrant-queue", ["docs"]),
//!     stack.service(),
//! )?;
//! let client = Client::new(queue.layer(stack.service()));
//! let written = client
//!     .upsert(UpsertPointsBuilder::new("docs", vec![PointStruct::new(1, vec![0.1, 0.2], [("n", 1.into())])]))
//!     .await?;
//! match written.queued() {
//!     None => println!("applied"),
//!     Some(queued) => println!("on disk as #{}, applied when Qdrant is back", queued.seq),
//! }
//! # Ok(()) }
//! ```
//!
//! The ready stack plugs it in from its configuration's `[queue]` section
//! ([`QdrantStack::queue`](crate::QdrantStack::queue)).
//!
//! # What is queued
//! Point writes — upsert, delete points, set/overwrite/delete/clear payload, update/delete
//! vectors and update batch — on a listed collection. They are idempotent (Qdrant point ids
//! are explicit), which is what makes replaying them safe. Everything else passes through.
//!
//! A write is first validated (bad input fails at once with `InvalidRequest`, it is never
//! queued) and sent. If it fails with a kind the queue is configured for (by default the
//! backend's troubles: `Connect`, `Timeout`, `Unavailable`, `Internal`, `CircuitOpen`,
//! `Unhealthy` — after the stack's retries), it is appended to the queue's log, fsynced, and
//! the caller gets [`VectorResponse::Queued`] with its sequence number. While writes to a
//! collection are queued, later writes to it are queued behind them without being sent, so
//! that they apply in order.
//!
//! # Durability
//! The log is [`qdrant_tower_client::log::RecordLog`]: each record is
//! `[len][crc32][seq][operation, protobuf message]`, `fsync`ed before the caller hears
//! `Queued`. After a crash, a torn or corrupt tail is detected when the queue opens, moved
//! aside to `queue.log.corrupt-<offset>`, reported ([`QueueStats::damaged`], a warning and
//! `qdrant_queue_corrupt_tails_total`) and not replayed; every acknowledged record is before
//! it.
//!
//! A caller that gives up on a write while it is being appended (a dropped future) may not
//! hear `Queued` though the write is queued and will apply — as a timed-out write may have
//! applied. Writes are idempotent, so sending it again is safe.
//!
//! The queue is bounded by records and bytes; a write that would pass either bound fails with
//! [`ErrorKind::QueueFull`] (neither sent nor queued).
//!
//! # Replay
//! A background task replays the log in order through the service given to
//! [`WriteBehindLayer::open`] (the stack below the queue, with its retry policy, breaker and
//! health gate) once the recovery signal says Qdrant is back (by default: always try; the
//! ready stack's signal is "health check healthy and breaker not open"), checking again every
//! [`QueueConfig::replay_interval`]. A record that fails with a transient kind stops the pass
//! (it is tried again later, still first), as does one refused for a reason fixed outside the
//! write (credentials, a full disk); a record Qdrant rejects for good (bad input, a missing
//! collection…) goes to the dead-letter file `dead-letters.jsonl` with its error, and replay
//! goes on. Consumed records are cut from the log every 64 records and at the end of a
//! pass; a crash in between replays at most those again, which leaves Qdrant as it was
//! (idempotent writes).
//!
//! # Consistency
//! A queued write is not in Qdrant: reads (through the stack or not) do not see it until it
//! is replayed. A caller that wants to see its queued writes asks for them:
//! [`WriteBehindHandle::pending`] returns the queued operations of a collection, in order,
//! to merge into what it reads. Writes by other processes are not ordered with the queue's.
//!
//! # Metrics
//! `qdrant_queue_records` and `qdrant_queue_bytes` (gauges), `qdrant_queue_appended_total`,
//! `qdrant_queue_replayed_total`, `qdrant_queue_dead_letters_total`,
//! `qdrant_queue_full_total`, `qdrant_queue_corrupt_tails_total`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use metrics::{Counter, Gauge};
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower::{Layer, Service, ServiceExt};

use qdrant_tower_client::log::{Record, RecordLog};
use qdrant_tower_client::{Limits, Queued, VectorError, VectorOp, VectorRequest, VectorResponse};
use qdrant_tower_layers::{ErrorKind, RequestInfo};

/// Consumed records are cut from the log after this many.
const TRUNCATE_EVERY: usize = 64;

/// Where the queue keeps its log, which collections it serves, and its bounds.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct QueueConfig {
    dir: PathBuf,
    collections: Vec<String>,
    max_records: u64,
    max_bytes: u64,
    queue_on: Vec<ErrorKind>,
    replay_interval: Duration,
    limits: Limits,
}

impl QueueConfig {
    /// A queue in directory `dir` (created if missing) for writes to `collections`; 100 000
    /// records, 1 GiB, replay checked every second.
    pub fn new<I, S>(dir: impl Into<PathBuf>, collections: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        QueueConfig {
            dir: dir.into(),
            collections: collections.into_iter().map(Into::into).collect(),
            max_records: 100_000,
            max_bytes: 1 << 30,
            queue_on: vec![
                ErrorKind::Connect,
                ErrorKind::Timeout,
                ErrorKind::Unavailable,
                ErrorKind::Internal,
                ErrorKind::CircuitOpen,
                ErrorKind::Unhealthy,
            ],
            replay_interval: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }

    /// The most records the queue holds.
    pub fn max_records(mut self, records: u64) -> Self {
        self.max_records = records.max(1);
        self
    }

    /// The most bytes the queue's log holds.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// The error kinds that send a write to the queue (instead of to the caller).
    pub fn queue_on(mut self, kinds: impl IntoIterator<Item = ErrorKind>) -> Self {
        self.queue_on = kinds.into_iter().collect();
        self
    }

    /// How often replay checks whether Qdrant is back, and waits after a transient failure.
    pub fn replay_interval(mut self, interval: Duration) -> Self {
        self.replay_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The limits writes are validated against before they are queued (those of the
    /// service below, by default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether the service below can take writes again (replay waits for it).
pub type RecoverySignal = Arc<dyn Fn() -> bool + Send + Sync>;

/// A record Qdrant rejected for good during replay, as kept in `dead-letters.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record's sequence number.
    pub seq: u64,
    /// The write's operation name.
    pub operation: String,
    /// Its collection.
    pub collection: Option<String>,
    /// The error kind Qdrant answered with.
    pub kind: String,
    /// The error's message.
    pub error: String,
    /// When it was rejected (seconds since the Unix epoch).
    pub at: u64,
    /// The write's protobuf message, base64: [`DeadLetter::request`] decodes it.
    pub message: String,
}

impl DeadLetter {
    /// The rejected write, to inspect or send again once fixed.
    pub fn request(&self) -> Result<VectorOp, qdrant_tower_client::DecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.message)
            .unwrap_or_default();
        VectorOp::decode(&self.operation, &bytes)
    }
}

/// The queue's state, for the admin API and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// Records waiting in the log.
    pub records: u64,
    /// The log's size in bytes.
    pub bytes: u64,
    /// Records waiting, per listed collection.
    pub pending: Vec<(String, u64)>,
    /// Records replayed into Qdrant since the queue opened.
    pub replayed: u64,
    /// Records in the dead-letter file.
    pub dead_letters: u64,
    /// A torn or corrupt tail found when the queue opened: where it began, its size, and
    /// where its bytes were moved.
    pub damaged: Option<(u64, u64, String)>,
    /// The last replay failure, if replay is waiting.
    pub waiting_on: Option<String>,
    /// The bounds.
    pub max_records: u64,
    /// The bounds.
    pub max_bytes: u64,
}

struct Metrics {
    records: Gauge,
    bytes: Gauge,
    appended: Counter,
    replayed: Counter,
    dead: Counter,
    full: Counter,
}

struct Shared {
    config: QueueConfig,
    /// Held while the queue is open (see `open_with_signal`).
    _lock: File,
    log: Mutex<RecordLog>,
    dead_path: PathBuf,
    pending: HashMap<Box<str>, AtomicU64>,
    replayed: AtomicU64,
    dead_letters: AtomicU64,
    damaged: Option<(u64, u64, String)>,
    waiting_on: Mutex<Option<String>>,
    wake: Arc<Notify>,
    metrics: Metrics,
}

/// Queues the writes of chosen collections when Qdrant cannot take them, and replays them;
/// see the [module documentation](self).
#[derive(Clone)]
pub struct WriteBehindLayer {
    shared: Arc<Shared>,
}

/// A handle on an open queue: its state, its queued writes, its dead letters.
#[derive(Clone)]
pub struct WriteBehindHandle {
    shared: Arc<Shared>,
}

impl WriteBehindLayer {
    /// Opens (or creates) the queue in `config`'s directory, recovering its log, and starts
    /// replaying it through `replay` (the service below the queue: give it the stack's
    /// retry, breaker and health gate) whenever it is not empty. Call it inside a Tokio
    /// runtime. Replay stops when the layer, its services and handles are all dropped.
    pub fn open<S>(config: QueueConfig, replay: S) -> io::Result<WriteBehindLayer>
    where
        S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        Self::open_with_signal(config, replay, Arc::new(|| true))
    }

    /// [`open`](Self::open), replaying only while `recovered` says the service below can
    /// take writes.
    pub fn open_with_signal<S>(
        config: QueueConfig,
        replay: S,
        recovered: RecoverySignal,
    ) -> io::Result<WriteBehindLayer>
    where
        S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other(
                "the write-behind queue replays on a Tokio runtime: open it inside one",
            )
        })?;
        std::fs::create_dir_all(&config.dir)?;
        // One queue per directory: two would replay the same records and cut each other's
        // log. The lock goes with the process (a crash releases it).
        let lock = File::create(config.dir.join("queue.lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "another write-behind queue has {} open",
                        config.dir.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        let (log, recovery) = RecordLog::open(config.dir.join("queue.log"))?;
        describe();
        let damaged = recovery.damaged.map(|(offset, bytes, aside)| {
            tracing::warn!(
                offset,
                bytes,
                moved_to = %aside.display(),
                "write-behind queue: a torn or corrupt tail was cut off (not replayed); every acknowledged record is before it"
            );
            metrics::counter!("qdrant_queue_corrupt_tails_total").increment(1);
            (offset, bytes, aside.display().to_string())
        });
        let pending: HashMap<Box<str>, AtomicU64> = config
            .collections
            .iter()
            .map(|name| (Box::from(name.as_str()), AtomicU64::new(0)))
            .collect();
        for record in log.records()? {
            if let Some(collection) = decode(&record.payload)
                .ok()
                .and_then(|op| op.collection().map(str::to_owned))
                && let Some(count) = pending.get(collection.as_str())
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        let dead_path = config.dir.join("dead-letters.jsonl");
        let dead_letters = match File::open(&dead_path) {
            Ok(file) => io::BufReader::new(file).lines().count() as u64,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        let metrics = Metrics {
            records: metrics::gauge!("qdrant_queue_records"),
            bytes: metrics::gauge!("qdrant_queue_bytes"),
            appended: metrics::counter!("qdrant_queue_appended_total"),
            replayed: metrics::counter!("qdrant_queue_replayed_total"),
            dead: metrics::counter!("qdrant_queue_dead_letters_total"),
            full: metrics::counter!("qdrant_queue_full_total"),
        };
        metrics.records.set(log.len() as f64);
        metrics.bytes.set(log.bytes() as f64);
        let shared = Arc::new(Shared {
            config,
            _lock: lock,
            log: Mutex::new(log),
            dead_path,
            pending,
            replayed: AtomicU64::new(0),
            dead_letters: AtomicU64::new(dead_letters),
            damaged,
            waiting_on: Mutex::new(None),
            wake: Arc::new(Notify::new()),
            metrics,
        });
        runtime.spawn(replay_loop(Arc::downgrade(&shared), replay, recovered));
        Ok(WriteBehindLayer { shared })
    }

    /// A handle on the queue.
    pub fn handle(&self) -> WriteBehindHandle {
        WriteBehindHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl WriteBehindHandle {
    /// The queue's state.
    pub fn stats(&self) -> QueueStats {
        let shared = &self.shared;
        let (records, bytes) = {
            let log = shared.lock_log();
            (log.len() as u64, log.bytes())
        };
        let mut pending: Vec<_> = shared
            .pending
            .iter()
            .map(|(name, count)| (name.to_string(), count.load(Ordering::Acquire)))
            .collect();
        pending.sort();
        QueueStats {
            records,
            bytes,
            pending,
            replayed: shared.replayed.load(Ordering::Relaxed),
            dead_letters: shared.dead_letters.load(Ordering::Relaxed),
            damaged: shared.damaged.clone(),
            waiting_on: shared
                .waiting_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            max_records: shared.config.max_records,
            max_bytes: shared.config.max_bytes,
        }
    }

    /// Records waiting to be replayed (all collections).
    pub fn len(&self) -> u64 {
        self.shared.lock_log().len() as u64
    }

    /// Whether nothing waits to be replayed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queued writes to `collection`, oldest first, with their sequence numbers: what a
    /// caller merges into its reads to see its own queued writes.
    pub fn pending(&self, collection: &str) -> io::Result<Vec<(u64, VectorOp)>> {
        let records = self.shared.lock_log().records()?;
        Ok(records
            .into_iter()
            .filter_map(|record| {
                let op = decode(&record.payload).ok()?;
                (op.collection() == Some(collection)).then_some((record.seq, op))
            })
            .collect())
    }

    /// The records Qdrant rejected for good, oldest first (the dead-letter file).
    pub fn dead_letters(&self) -> io::Result<Vec<DeadLetter>> {
        let file = match File::open(&self.shared.dead_path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        io::BufReader::new(file)
            .lines()
            .map(|line| {
                serde_json::from_str(&line?)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
            })
            .collect()
    }

    /// Waits until the queue is empty (every record replayed or dead-lettered), for at most
    /// `timeout`; returns whether it is.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Appends `request` (an idempotent point write, of any collection) to the queue without
    /// sending it: for a repair that must not be lost (the [saga](crate::saga)'s
    /// compensation when Qdrant refuses it). It replays in order with the rest; writes to a
    /// collection the queue does not list are not held behind it.
    pub async fn enqueue(&self, request: VectorRequest) -> Result<Queued, VectorError> {
        if !queueable(request.op()) {
            return Err(VectorError::new(
                ErrorKind::InvalidRequest,
                request.op().operation(),
                "only point writes (upsert, delete, payload and vector updates, update batch) can be queued",
            ));
        }
        request.validate(&self.shared.config.limits)?;
        spawn_append(Arc::clone(&self.shared), request, None)
            .await
            .map_err(|join| {
                VectorError::new(
                    ErrorKind::Internal,
                    "",
                    format!("the write-behind queue's append did not finish: {join}"),
                )
            })?
    }

    /// Asks replay to check for recovery now rather than at its next interval.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock_log(&self) -> std::sync::MutexGuard<'_, RecordLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether writes to `collection` wait behind queued ones.
    fn has_pending(&self, collection: &str) -> bool {
        self.pending
            .get(collection)
            .is_some_and(|count| count.load(Ordering::Acquire) > 0)
    }

    /// Appends `request` (blocking: fsync). Bounded by records and bytes.
    fn append(
        &self,
        request: &VectorRequest,
        cause: Option<ErrorKind>,
    ) -> Result<Queued, VectorError> {
        let op = request.op();
        let operation = op.operation();
        let payload = encode(op);
        let mut log = self.lock_log();
        let record_bytes = payload.len() as u64 + 16;
        if log.len() as u64 >= self.config.max_records
            || log.bytes() + record_bytes > self.config.max_bytes
        {
            self.metrics.full.increment(1);
            return Err(VectorError::new(
                ErrorKind::QueueFull,
                operation,
                format!(
                    "the write-behind queue is full ({} of {} records, {} of {} bytes; this write needs {record_bytes}): the write was neither sent nor queued",
                    log.len(),
                    self.config.max_records,
                    log.bytes(),
                    self.config.max_bytes
                ),
            )
            .with_collection(op.collection()));
        }
        let seq = log.append(&payload).map_err(|error| {
            VectorError::new(
                ErrorKind::Internal,
                operation,
                format!("the write-behind queue could not store the write: {error}"),
            )
            .with_collection(op.collection())
        })?;
        if let Some(count) = op.collection().and_then(|name| self.pending.get(name)) {
            count.fetch_add(1, Ordering::AcqRel);
        }
        self.metrics.records.set(log.len() as f64);
        self.metrics.bytes.set(log.bytes() as f64);
        let first = log.len() == 1;
        drop(log);
        self.metrics.appended.increment(1);
        // Replay is idle when the queue was empty; otherwise it is already on it (or waiting
        // out a failure, which a new record does not shorten).
        if first {
            self.wake.notify_one();
        }
        Ok(Queued::new(seq, operation, cause))
    }

    fn dead_letter(
        &self,
        record: &Record,
        op: Option<&VectorOp>,
        kind: &str,
        error: &str,
    ) -> io::Result<()> {
        let (operation, message) = split(&record.payload);
        let letter = DeadLetter {
            seq: record.seq,
            operation: operation.to_owned(),
            collection: op.and_then(|op| op.collection().map(str::to_owned)),
            kind: kind.to_owned(),
            error: error.to_owned(),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            message: base64::engine::general_purpose::STANDARD.encode(message),
        };
        let mut line = serde_json::to_vec(&letter).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_path)?;
        file.write_all(&line)?;
        file.sync_data()?;
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        self.metrics.dead.increment(1);
        tracing::warn!(
            seq = record.seq,
            operation,
            kind,
            "write-behind queue: Qdrant rejected a queued write for good; kept in the dead-letter file"
        );
        Ok(())
    }

    /// Cuts the records before `seq` from the log.
    fn consume_before(&self, seq: u64) -> io::Result<()> {
        let mut log = self.lock_log();
        log.truncate_before(seq)?;
        self.metrics.records.set(log.len() as f64);
        self.metrics.bytes.set(log.bytes() as f64);
        Ok(())
    }

    fn set_waiting(&self, reason: Option<String>) {
        *self
            .waiting_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }
}

/// Whether `op` is a write the queue may hold (idempotent point writes).
fn queueable(op: &VectorOp) -> bool {
    matches!(
        op,
        VectorOp::Upsert(_)
            | VectorOp::Delete(_)
            | VectorOp::SetPayload(_)
            | VectorOp::OverwritePayload(_)
            | VectorOp::DeletePayload(_)
            | VectorOp::ClearPayload(_)
            | VectorOp::UpdateVectors(_)
            | VectorOp::DeleteVectors(_)
            | VectorOp::UpdateBatch(_)
    )
}

/// A record's payload: `[operation name length: u8][operation name][protobuf message]`.
fn encode(op: &VectorOp) -> Vec<u8> {
    let name = op.operation().as_bytes();
    let message = op.encode_to_vec();
    let mut payload = Vec::with_capacity(1 + name.len() + message.len());
    payload.push(name.len() as u8);
    payload.extend_from_slice(name);
    payload.extend_from_slice(&message);
    payload
}

fn split(payload: &[u8]) -> (&str, &[u8]) {
    let Some((&len, rest)) = payload.split_first() else {
        return ("", &[]);
    };
    let len = usize::from(len).min(rest.len());
    (
        std::str::from_utf8(&rest[..len]).unwrap_or(""),
        &rest[len..],
    )
}

fn decode(payload: &[u8]) -> Result<VectorOp, qdrant_tower_client::DecodeError> {
    let (operation, message) = split(payload);
    VectorOp::decode(operation, message)
}

impl fmt::Debug for WriteBehindLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehindLayer")
            .field("dir", &self.shared.config.dir)
            .field("collections", &self.shared.config.collections)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WriteBehindHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehindHandle")
            .field("dir", &self.shared.config.dir)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for WriteBehindLayer {
    type Service = WriteBehind<S>;

    fn layer(&self, inner: S) -> WriteBehind<S> {
        WriteBehind {
            inner,
            shared: Some(Arc::clone(&self.shared)),
        }
    }
}

/// The service of a [`WriteBehindLayer`] (or, without a queue, a pass-through: the ready
/// stack's type is the same either way).
#[derive(Clone)]
pub struct WriteBehind<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S> WriteBehind<S> {
    /// A pass-through: no queue.
    pub fn none(inner: S) -> Self {
        WriteBehind {
            inner,
            shared: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for WriteBehind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("inner", &self.inner)
            .field("queue", &self.shared.as_ref().map(|s| &s.config.dir))
            .finish()
    }
}

impl<S> Service<VectorRequest> for WriteBehind<S>
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    type Response = VectorResponse;
    type Error = VectorError;
    type Future = QueueFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), VectorError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        let Some(shared) = &self.shared else {
            return QueueFuture {
                state: State::Direct {
                    inner: self.inner.call(request),
                },
            };
        };
        let listed = request
            .collection()
            .is_some_and(|name| shared.pending.contains_key(name));
        if !listed || !queueable(request.op()) {
            return QueueFuture {
                state: State::Direct {
                    inner: self.inner.call(request),
                },
            };
        }
        if let Err(error) = request.validate(&shared.config.limits) {
            return QueueFuture {
                state: State::Done {
                    output: Some(Err(error)),
                },
            };
        }
        if request
            .collection()
            .is_some_and(|name| shared.has_pending(name))
        {
            return QueueFuture {
                state: State::Appending {
                    task: spawn_append(Arc::clone(shared), request, None),
                },
            };
        }
        QueueFuture {
            state: State::Sending {
                inner: self.inner.call(request.clone()),
                request: Some((request, Arc::clone(shared))),
            },
        }
    }
}

fn spawn_append(
    shared: Arc<Shared>,
    request: VectorRequest,
    cause: Option<ErrorKind>,
) -> JoinHandle<Result<Queued, VectorError>> {
    tokio::task::spawn_blocking(move || shared.append(&request, cause))
}

pin_project! {
    /// The future of a [`WriteBehind`] call.
    pub struct QueueFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Not the queue's: passed through.
        Direct { #[pin] inner: F },
        // A queueable write, sent first.
        Sending { #[pin] inner: F, request: Option<(VectorRequest, Arc<Shared>)> },
        // Being appended to the log (fsync on a blocking thread).
        Appending { task: JoinHandle<Result<Queued, VectorError>> },
        // Answered without sending.
        Done { output: Option<Result<VectorResponse, VectorError>> },
    }
}

impl<F> Future for QueueFuture<F>
where
    F: Future<Output = Result<VectorResponse, VectorError>>,
{
    type Output = Result<VectorResponse, VectorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Direct { inner } => return inner.poll(cx),
                StateProj::Sending { inner, request } => match std::task::ready!(inner.poll(cx)) {
                    Err(error) => {
                        let Some((request, shared)) = request.take() else {
                            return Poll::Ready(Err(error));
                        };
                        if !shared.config.queue_on.contains(&error.kind()) {
                            return Poll::Ready(Err(error));
                        }
                        State::Appending {
                            task: spawn_append(shared, request, Some(error.kind())),
                        }
                    }
                    ok => return Poll::Ready(ok),
                },
                StateProj::Appending { task } => {
                    let joined = std::task::ready!(Pin::new(task).poll(cx));
                    return Poll::Ready(match joined {
                        Ok(Ok(queued)) => Ok(VectorResponse::Queued(queued)),
                        Ok(Err(error)) => Err(error),
                        Err(join) => Err(VectorError::new(
                            ErrorKind::Internal,
                            "",
                            format!("the write-behind queue's append did not finish: {join}"),
                        )),
                    });
                }
                StateProj::Done { output } => {
                    return Poll::Ready(output.take().unwrap_or_else(|| {
                        Err(VectorError::new(
                            ErrorKind::Internal,
                            "",
                            "a write-behind future was polled after it ended",
                        ))
                    }));
                }
            };
            state.set(next);
        }
    }
}

impl<F> fmt::Debug for QueueFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueFuture").finish_non_exhaustive()
    }
}

/// Replays the log through `service` while the queue lives.
async fn replay_loop<S>(shared: Weak<Shared>, mut service: S, recovered: RecoverySignal)
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let Some(queue) = shared.upgrade() else {
            return;
        };
        let interval = queue.config.replay_interval;
        let empty = queue.lock_log().is_empty();
        if !empty && recovered() {
            match replay_pass(&queue, &mut service).await {
                Ok(true) => {
                    queue.set_waiting(None);
                    continue;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "write-behind queue: replay could not update its log");
                    queue.set_waiting(Some(format!("the queue's log: {error}")));
                }
            }
        } else if !empty {
            queue.set_waiting(Some("Qdrant is not back (health or breaker)".to_owned()));
        }
        let wake = Arc::clone(&queue.wake);
        drop(queue);
        let notified = wake.notified();
        // Wake on a new record or a `wake`, or after the interval; the weak reference is
        // checked again then, so replay ends soon after the queue is dropped.
        let _ = tokio::time::timeout(interval, notified).await;
    }
}

/// One pass over the log. `Ok(true)`: it got to the end; `Ok(false)`: a transient failure
/// stopped it (the failing record stays first).
async fn replay_pass<S>(queue: &Arc<Shared>, service: &mut S) -> io::Result<bool>
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    let records = {
        let log = queue.lock_log();
        log.records()?
    };
    let mut done_before = None;
    let mut since_truncate = 0;
    let mut finished = true;
    for record in &records {
        let op = match decode(&record.payload) {
            Ok(op) => op,
            Err(error) => {
                queue.dead_letter(record, None, "invalid_request", &error.to_string())?;
                done_before = Some(record.seq + 1);
                continue;
            }
        };
        let collection = op.collection().map(str::to_owned);
        let operation = op.operation();
        let sent = match service.ready().await {
            Ok(ready) => ready.call(VectorRequest::new(op.clone())).await,
            Err(error) => Err(error),
        };
        match sent {
            Ok(_) => {
                queue.replayed.fetch_add(1, Ordering::Relaxed);
                queue.metrics.replayed.increment(1);
            }
            Err(error) if retry_later(error.kind()) => {
                tracing::debug!(seq = record.seq, operation, %error, "write-behind queue: replay waits");
                queue.set_waiting(Some(format!(
                    "#{} {operation}: {} ({})",
                    record.seq,
                    error.message(),
                    error.kind()
                )));
                finished = false;
                break;
            }
            Err(error) => {
                queue.dead_letter(record, Some(&op), error.kind().as_str(), error.message())?;
            }
        }
        if let Some(count) = collection
            .as_deref()
            .and_then(|name| queue.pending.get(name))
        {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        done_before = Some(record.seq + 1);
        since_truncate += 1;
        if since_truncate >= TRUNCATE_EVERY {
            queue.consume_before(record.seq + 1)?;
            since_truncate = 0;
        }
    }
    if let Some(seq) = done_before {
        queue.consume_before(seq)?;
    }
    Ok(finished)
}

/// Whether a replayed write that failed with `kind` is tried again later (rather than
/// dead-lettered). Only Qdrant's verdicts on the write itself are final: bad input, a missing
/// collection or point, an existing one. Everything else — the backend's troubles, the
/// layers' rejections, credentials, a full disk — is fixed outside the write, so the write
/// waits for it.
fn retry_later(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::AlreadyExists
    )
}

fn describe() {
    metrics::describe_gauge!(
        "qdrant_queue_records",
        "Writes waiting in the write-behind queue"
    );
    metrics::describe_gauge!("qdrant_queue_bytes", "Size of the write-behind queue's log");
    metrics::describe_counter!(
        "qdrant_queue_appended_total",
        "Writes accepted into the write-behind queue (fsynced)"
    );
    metrics::describe_counter!(
        "qdrant_queue_replayed_total",
        "Queued writes replayed into Qdrant"
    );
    metrics::describe_counter!(
        "qdrant_queue_dead_letters_total",
        "Queued writes Qdrant rejected for good (kept in the dead-letter file)"
    );
    metrics::describe_counter!(
        "qdrant_queue_full_total",
        "Writes refused because the write-behind queue was full"
    );
    metrics::describe_counter!(
        "qdrant_queue_corrupt_tails_total",
        "Torn or corrupt log tails cut off when the queue opened"
    );
}
