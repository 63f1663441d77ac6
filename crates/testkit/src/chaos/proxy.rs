//! [`ChaosProxy`]: the handle, the shared state and the accept loop.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::connection;
use super::toxic::{Direction, Toxics};

/// How many times `refuse(false)` tries to bind the port again before giving up, and how long
/// it waits between tries. A port is rarely taken in between; when it is, it is seldom for long.
const REBIND_ATTEMPTS: u32 = 50;
const REBIND_PAUSE: Duration = Duration::from_millis(10);

/// A fault-injecting TCP proxy on `127.0.0.1` in front of one upstream address.
///
/// Point a client at [`url`](Self::url) instead of the server, then change what the proxy does
/// while the test runs: add latency or a bandwidth limit, reset or truncate connections,
/// swallow traffic, refuse connections, and confine any of it to a seeded fraction of the
/// connections. The module docs ([`crate::chaos`]) list every effect. Each change applies at
/// once, to new connections and, where it makes sense, to the open ones.
///
/// The proxy works on bytes and knows nothing of HTTP/2 or gRPC: put it in front of the
/// [`TestServer`](crate::TestServer), a real Qdrant, or anything else that speaks TCP.
///
/// It is a handle: clones share the same proxy. When the last clone is dropped, the proxy
/// stops accepting and every connection task is cancelled (their sockets close); nothing is
/// left running. It costs one task per proxy plus one per open connection, and one copy of
/// each chunk of data. Must be started within a tokio runtime.
///
/// # Example
///
/// An echo server, and a proxy in front of it that delays the answers:
///
/// ```
/// use std::time::{Duration, Instant};
/// use qdrant_tower_testkit::{ChaosProxy, Direction};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::{TcpListener, TcpStream};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let echo = TcpListener::bind("127.0.0.1:0").await?;
/// let upstream = echo.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok((mut socket, _)) = echo.accept().await {
///         tokio::spawn(async move {
///             let (mut reader, mut writer) = socket.split();
///             let _ = tokio::io::copy(&mut reader, &mut writer).await;
///         });
///     }
/// });
///
/// let proxy = ChaosProxy::start(upstream).await?;
/// proxy.latency(Direction::Downstream, Duration::from_millis(50), Duration::ZERO);
///
/// let mut client = TcpStream::connect(proxy.addr()).await?;
/// let started = Instant::now();
/// client.write_all(b"ping").await?;
/// let mut answer = [0; 4];
/// client.read_exact(&mut answer).await?;
/// assert_eq!(&answer, b"ping");
/// assert!(started.elapsed() >= Duration::from_millis(50));
///
/// // Now swallow the requests: the same connection gets no answer.
/// proxy.blackhole(Direction::Upstream, true);
/// client.write_all(b"ping").await?;
/// let waited = tokio::time::timeout(Duration::from_millis(100), client.read(&mut answer)).await;
/// assert!(waited.is_err(), "no answer through a blackhole");
/// assert_eq!(proxy.stats().upstream.forwarded, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ChaosProxy {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    accept_task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The accept task owns every connection task (a JoinSet), so this cancels them all.
        self.accept_task.abort();
    }
}

impl ChaosProxy {
    /// Starts a proxy on `127.0.0.1` and a free port, forwarding every connection to
    /// `upstream`, with no effects yet.
    ///
    /// The upstream is connected to once per accepted connection; if that fails, the client's
    /// connection is reset. Fails only if no port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<ChaosProxy> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let (commands, receiver) = mpsc::unbounded_channel();
        let accept_task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            Arc::clone(&shared),
            receiver,
        ));
        Ok(ChaosProxy {
            inner: Arc::new(Inner {
                addr,
                upstream,
                shared,
                commands,
                accept_task,
            }),
        })
    }

    /// The address clients connect to: `127.0.0.1` and the proxy's port. It stays the same
    /// across [`refuse`](Self::refuse).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The URL to give a client, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// The effects in force now.
    pub fn toxics(&self) -> Toxics {
        self.inner.shared.control.borrow().toxics.clone()
    }

    /// Replaces every effect with `toxics`.
    pub fn set(&self, toxics: Toxics) -> &Self {
        self.update(|current| *current = toxics)
    }

    /// Changes the effects in place, as one atomic change.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    /// use qdrant_tower_testkit::ChaosProxy;
    ///
    /// let proxy = ChaosProxy::start(upstream).await?;
    /// proxy.update(|toxics| {
    ///     toxics.downstream.bandwidth = Some(1024);
    ///     toxics.upstream.blackhole = true;
    /// });
    /// assert!(proxy.toxics().upstream.blackhole);
    /// # Ok(())
    /// # }
    /// ```
    pub fn update(&self, change: impl FnOnce(&mut Toxics)) -> &Self {
        self.inner.shared.modify(change, false);
        self
    }

    /// Removes every effect (and the partial selection): the proxy passes traffic clean again.
    /// Connections already reset or closed stay so, and data swallowed by a blackhole is lost.
    pub fn clear(&self) -> &Self {
        self.set(Toxics::default())
    }

    /// Delays each chunk of data in `direction` by `base` plus a seeded random time in
    /// `[0, jitter]`, keeping their order. Applies to data read from now on, on open
    /// connections too.
    pub fn latency(&self, direction: Direction, base: Duration, jitter: Duration) -> &Self {
        self.update(|toxics| {
            toxics.set(direction, |side| {
                side.latency = base;
                side.jitter = jitter;
            });
        })
    }

    /// Forwards at most `bytes_per_sec` in `direction` (on each connection separately);
    /// 0 forwards nothing. Open connections slow down at once.
    pub fn bandwidth(&self, direction: Direction, bytes_per_sec: u64) -> &Self {
        self.update(|toxics| toxics.set(direction, |side| side.bandwidth = Some(bytes_per_sec)))
    }

    /// While `on`, reads the data in `direction` and drops it, end of stream included: the
    /// other side never sees it, and a client waiting for an answer waits until its own
    /// timeout. Applies to open connections; what was dropped is not sent later.
    pub fn blackhole(&self, direction: Direction, on: bool) -> &Self {
        self.update(|toxics| toxics.set(direction, |side| side.blackhole = on))
    }

    /// Resets each connection (RST to both sides) once `bytes` more have been forwarded in
    /// `direction`, counted from now on open connections and from the start on new ones.
    /// `0` resets every (affected) connection at once, and new ones as soon as accepted.
    pub fn reset_after(&self, direction: Direction, bytes: u64) -> &Self {
        self.inner.shared.modify(
            |toxics| toxics.set(direction, |side| side.reset_after = Some(bytes)),
            true,
        );
        self
    }

    /// Closes each connection gracefully (FIN to both sides) once `bytes` more have been
    /// forwarded in `direction`, counted as for [`reset_after`](Self::reset_after): a message
    /// crossing the limit arrives truncated.
    pub fn close_after(&self, direction: Direction, bytes: u64) -> &Self {
        self.inner.shared.modify(
            |toxics| toxics.set(direction, |side| side.close_after = Some(bytes)),
            true,
        );
        self
    }

    /// Holds each end of stream (FIN) in `direction` for `delay` before forwarding it, and
    /// waits as long before a [`close_after`](Self::close_after) close.
    pub fn slow_close(&self, direction: Direction, delay: Duration) -> &Self {
        self.update(|toxics| toxics.set(direction, |side| side.slow_close = delay))
    }

    /// Confines the effects to a `fraction` of the connections, chosen by `seed` (see
    /// [`Toxics::affects`]): the same seed hits the same connections in every run. Does not
    /// confine [`reset_all`](Self::reset_all) or [`refuse`](Self::refuse).
    pub fn partial(&self, fraction: f64, seed: u64) -> &Self {
        self.update(|toxics| {
            toxics.fraction = fraction;
            toxics.seed = seed;
        })
    }

    /// Resets every open connection now (RST to the client and to the upstream), whatever the
    /// effects and the partial selection say. "Open" includes connections the OS completed
    /// that the proxy had not yet taken from its backlog. Returns once all of them are closed;
    /// connections made meanwhile are not touched.
    pub async fn reset_all(&self) {
        let (done, started) = oneshot::channel();
        if self.inner.commands.send(Command::ResetAll(done)).is_err() {
            return;
        }
        let Ok(mut gone) = started.await else {
            return;
        };
        // Every connection open before the reset holds a sender; `None` means all are gone.
        while gone.recv().await.is_some() {}
    }

    /// With `true`, closes the listening socket: new connections are refused. The open ones
    /// go on, including those the OS completed that the proxy had not yet taken from its
    /// backlog (their clients already saw them connect). With `false`, listens again on the same port. Returns once done; an error means
    /// the port could not be bound again (another socket took it).
    pub async fn refuse(&self, refuse: bool) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Refuse(refuse, done))
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// The proxy's counters since it started.
    pub fn stats(&self) -> ProxyStats {
        self.inner.shared.stats()
    }
}

impl fmt::Debug for ChaosProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosProxy")
            .field("addr", &self.inner.addr)
            .field("upstream", &self.inner.upstream)
            .field("toxics", &self.toxics())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A proxy's counters: see [`ChaosProxy::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Accepted connections the effects applied to when they were accepted (all of them unless
    /// [`partial`](ChaosProxy::partial) is set).
    pub affected: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections the proxy reset: by [`reset_all`](ChaosProxy::reset_all),
    /// [`reset_after`](ChaosProxy::reset_after), because the upstream could not be reached, or
    /// to pass on a reset or error of the other side.
    pub reset: u64,
    /// Client → upstream traffic.
    pub upstream: Traffic,
    /// Upstream → client traffic.
    pub downstream: Traffic,
}

/// Bytes through one direction of the proxy, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Bytes read from the sending side.
    pub received: u64,
    /// Bytes written to the receiving side (not those dropped, held or cut off).
    pub forwarded: u64,
}

/// What the handle asks of the accept loop.
enum Command {
    Refuse(bool, oneshot::Sender<io::Result<()>>),
    /// Answered with the receiver that closes once every reset connection is gone.
    ResetAll(oneshot::Sender<mpsc::Receiver<()>>),
}

/// What the handle, the accept loop and the connection tasks share.
pub(crate) struct Shared {
    control: watch::Sender<Control>,
    /// The sender every connection holds until it ends, and its receiver; `reset_all` swaps
    /// in a fresh pair and waits for the old senders to be gone.
    open_group: Mutex<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    pub(crate) counters: Counters,
}

/// The effects plus what connections need to act on one-off commands.
#[derive(Debug, Clone, Default)]
pub(crate) struct Control {
    pub(crate) toxics: Toxics,
    /// Bumped by `reset_all`: a connection opened at an older epoch resets.
    pub(crate) reset_epoch: u64,
    /// Bumped when a byte limit is set: connections count the bytes anew.
    pub(crate) cut_seq: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) affected: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) reset: AtomicU64,
    pub(crate) received: [AtomicU64; 2],
    pub(crate) forwarded: [AtomicU64; 2],
}

/// What a connection task gets when it is accepted.
pub(crate) struct Registration {
    pub(crate) control: watch::Receiver<Control>,
    pub(crate) reset_epoch: u64,
    pub(crate) cut_seq: u64,
}

impl Shared {
    fn new() -> Self {
        let (control, _) = watch::channel(Control::default());
        Shared {
            control,
            open_group: Mutex::new(mpsc::channel(1)),
            counters: Counters::default(),
        }
    }

    fn modify(&self, change: impl FnOnce(&mut Toxics), restart_count: bool) {
        self.control.send_modify(|control| {
            let before = control.toxics.cut_limits();
            change(&mut control.toxics);
            if restart_count || control.toxics.cut_limits() != before {
                control.cut_seq += 1;
            }
        });
    }

    /// Registers a new connection as open; under the same lock as `reset_all`, so that a
    /// connection either holds the old token and sees the new epoch, or holds the new token.
    fn register(self: &Arc<Self>) -> (Registration, OpenGuard) {
        let group = self
            .open_group
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        let control = self.control.subscribe();
        let (reset_epoch, cut_seq) = {
            let current = control.borrow();
            (current.reset_epoch, current.cut_seq)
        };
        let guard = OpenGuard {
            shared: Arc::clone(self),
            _token: group.0.clone(),
        };
        let registration = Registration {
            control,
            reset_epoch,
            cut_seq,
        };
        (registration, guard)
    }

    /// Starts a reset of every open connection; the receiver yields `None` once all are gone.
    fn reset_all(&self) -> mpsc::Receiver<()> {
        let mut group = self
            .open_group
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (_, old) = std::mem::replace(&mut *group, mpsc::channel(1));
        self.control.send_modify(|control| control.reset_epoch += 1);
        old
    }

    fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ProxyStats {
            accepted: load(&c.accepted),
            affected: load(&c.affected),
            open: load(&c.open),
            reset: load(&c.reset),
            upstream: Traffic {
                received: load(&c.received[0]),
                forwarded: load(&c.forwarded[0]),
            },
            downstream: Traffic {
                received: load(&c.received[1]),
                forwarded: load(&c.forwarded[1]),
            },
        }
    }
}

/// Counts a connection as open until dropped, however its task ends (aborts included), and
/// holds the token `reset_all` waits for (dropped after the count, so that `open` is right
/// when `reset_all` returns).
pub(crate) struct OpenGuard {
    shared: Arc<Shared>,
    _token: mpsc::Sender<()>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Refuse(refuse, done)) => {
                    let result = if refuse {
                        // Keep the connections the OS already completed (a client sees them
                        // as open); only later ones are refused.
                        if let Some(listener) = listener.take() {
                            while let Some(client) = accepted_now(&listener).await {
                                spawn_connection(client, &mut next_id, upstream, &shared, &mut connections);
                            }
                        }
                        Ok(())
                    } else if listener.is_none() {
                        rebind(addr).await.map(|bound| listener = Some(bound))
                    } else {
                        Ok(())
                    };
                    let _ = done.send(result);
                }
                Some(Command::ResetAll(started)) => {
                    if let Some(listener) = &listener {
                        while let Some(client) = accepted_now(listener).await {
                            spawn_connection(client, &mut next_id, upstream, &shared, &mut connections);
                        }
                    }
                    let _ = started.send(shared.reset_all());
                }
                None => break,
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(client) => {
                    spawn_connection(client, &mut next_id, upstream, &shared, &mut connections);
                }
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, %addr, "chaos proxy cannot accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn spawn_connection(
    client: TcpStream,
    next_id: &mut u64,
    upstream: SocketAddr,
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
) {
    let id = *next_id;
    *next_id += 1;
    let (registration, guard) = shared.register();
    if registration.control.borrow().toxics.affects(id) {
        shared.counters.affected.fetch_add(1, Ordering::Relaxed);
    }
    connections.spawn(connection::run(
        client,
        upstream,
        id,
        Arc::clone(shared),
        registration,
        guard,
    ));
}

/// A connection waiting in the listener's backlog, if there is one now.
async fn accepted_now(listener: &TcpListener) -> Option<TcpStream> {
    std::future::poll_fn(|cx| match listener.poll_accept(cx) {
        Poll::Ready(Ok((stream, _))) => Poll::Ready(Some(stream)),
        Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// A listener with `SO_REUSEADDR`, so that the port can be bound again after `refuse(true)`
/// while connections from before linger in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut attempt = 1;
    loop {
        match bind(addr) {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && attempt < REBIND_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            result => return result,
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the chaos proxy has stopped")
}
