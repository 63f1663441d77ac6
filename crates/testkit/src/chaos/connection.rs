//! One proxied connection: a task relaying both directions through the effects.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

use super::proxy::{Control, OpenGuard, Registration, Shared};
use super::toxic::{DirectionToxics, Rng, Side};

/// Bytes read at once from a socket.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes a direction holds (delayed or paced) before it stops reading, so that a slow
/// direction pushes back on its sender instead of buffering without bound.
const MAX_QUEUED: usize = 256 * 1024;
/// A bandwidth limit forwards in slices of this fraction of a second's worth, so a burst is
/// never more than 10 ms of the rate.
const SLICES_PER_SECOND: u64 = 100;
/// How long a graceful close waits for both peers to close their side before dropping the
/// sockets anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How a direction, or the whole connection, ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The source closed and its end of stream was passed on (or swallowed).
    Finished,
    /// Reset both sides: a reset toxic, or an I/O error to pass on.
    Reset,
    /// Close both sides gracefully after a delay (`close_after`).
    Close(Duration),
}

pub(crate) async fn run(
    mut client: TcpStream,
    upstream: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
    registration: Registration,
    _open: OpenGuard,
) {
    let Registration {
        control,
        reset_epoch,
        cut_seq,
    } = registration;
    let reset = reset_requested(control.clone(), reset_epoch);
    tokio::pin!(reset);

    let connected = tokio::select! {
        biased;
        () = &mut reset => None,
        connected = TcpStream::connect(upstream) => connected.ok(),
    };
    let Some(mut server) = connected else {
        shared.counters.reset.fetch_add(1, Ordering::Relaxed);
        set_reset(&client);
        return;
    };
    // Latency toxics are meant to be the only delay; Nagle would add its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let end = tokio::select! {
        biased;
        () = &mut reset => End::Reset,
        end = relay(&mut client, &mut server, id, &shared, &control, cut_seq) => end,
    };
    match end {
        End::Finished => {}
        End::Reset => {
            shared.counters.reset.fetch_add(1, Ordering::Relaxed);
            set_reset(&client);
            set_reset(&server);
        }
        End::Close(delay) => {
            let closed = async {
                sleep(delay).await;
                let _ = client.shutdown().await;
                let _ = server.shutdown().await;
                // Closing a socket with unread data sends RST, not FIN: read what the peers
                // still send until they close too.
                let _ = tokio::time::timeout(DRAIN_LIMIT, async {
                    tokio::join!(drain(&mut client), drain(&mut server))
                })
                .await;
            };
            tokio::select! {
                biased;
                () = &mut reset => {
                    shared.counters.reset.fetch_add(1, Ordering::Relaxed);
                    set_reset(&client);
                    set_reset(&server);
                }
                () = closed => {}
            }
        }
    }
}

/// Resolves once `reset_all` is called after the connection registered.
async fn reset_requested(mut control: watch::Receiver<Control>, epoch: u64) {
    loop {
        if control.borrow_and_update().reset_epoch > epoch {
            return;
        }
        if control.changed().await.is_err() {
            // The proxy is gone; its drop cancels this task anyway.
            return std::future::pending().await;
        }
    }
}

/// Makes dropping `stream` send RST instead of FIN.
#[allow(deprecated)]
fn set_reset(stream: &TcpStream) {
    // `set_zero_linger` says the same without the deprecation, but needs tokio 1.50 and the
    // workspace allows 1.48. The deprecation is about a non-zero linger blocking the thread;
    // a zero linger never blocks.
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// Runs both directions until both finish, or either cuts the connection.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    id: u64,
    shared: &Shared,
    control: &watch::Receiver<Control>,
    cut_seq: u64,
) -> End {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = Pump::new(Side::Upstream, id, shared, control.clone(), cut_seq)
        .run(client_read, server_write);
    let down = Pump::new(Side::Downstream, id, shared, control.clone(), cut_seq)
        .run(server_read, client_write);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        let end = tokio::select! {
            end = &mut up, if !up_done => {
                up_done = true;
                end
            }
            end = &mut down, if !down_done => {
                down_done = true;
                end
            }
        };
        match end {
            End::Finished if up_done && down_done => return End::Finished,
            End::Finished => {}
            cut => return cut,
        }
    }
}

/// A chunk read and waiting to be forwarded.
struct Chunk {
    data: Vec<u8>,
    sent: usize,
    due: Instant,
}

/// One direction of one connection.
struct Pump<'a> {
    side: Side,
    id: u64,
    shared: &'a Shared,
    control: watch::Receiver<Control>,
    rng: Rng,
    queue: VecDeque<Chunk>,
    queued: usize,
    /// The latest due time given so far, so that chunks keep their order under jitter.
    last_due: Instant,
    /// When a bandwidth limit lets the next slice go.
    paced_until: Instant,
    /// The byte limits' generation this direction counts for, and its count.
    cut_seq: u64,
    since_cut: u64,
}

impl<'a> Pump<'a> {
    fn new(
        side: Side,
        id: u64,
        shared: &'a Shared,
        control: watch::Receiver<Control>,
        cut_seq: u64,
    ) -> Self {
        let seed = control.borrow().toxics.seed;
        let now = Instant::now();
        Pump {
            side,
            id,
            shared,
            control,
            rng: Rng::new(seed, id, side),
            queue: VecDeque::new(),
            queued: 0,
            last_due: now,
            paced_until: now,
            cut_seq,
            since_cut: 0,
        }
    }

    fn index(&self) -> usize {
        match self.side {
            Side::Upstream => 0,
            Side::Downstream => 1,
        }
    }

    /// The effects on this direction of this connection now, and restarts the byte count if
    /// the limits were set anew.
    fn toxics(&mut self) -> DirectionToxics {
        let control = self.control.borrow_and_update();
        if control.cut_seq != self.cut_seq {
            self.cut_seq = control.cut_seq;
            self.since_cut = 0;
        }
        if control.toxics.affects(self.id) {
            *control.toxics.side(self.side)
        } else {
            DirectionToxics::default()
        }
    }

    async fn run(
        mut self,
        mut src: impl AsyncRead + Unpin,
        mut dst: impl AsyncWrite + Unpin,
    ) -> End {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut eof = false;
        let mut watching = true;
        loop {
            let toxics = self.toxics();
            if let Some((limit, reset)) = toxics.cut_limit()
                && self.since_cut >= limit
            {
                return if reset {
                    End::Reset
                } else {
                    End::Close(toxics.slow_close)
                };
            }
            if toxics.blackhole {
                self.queue.clear();
                self.queued = 0;
            }
            if eof && self.queue.is_empty() {
                if !toxics.blackhole {
                    sleep(toxics.slow_close).await;
                    let _ = dst.shutdown().await;
                }
                return End::Finished;
            }
            let next_write = match (self.queue.front(), toxics.bandwidth) {
                (None, _) | (_, Some(0)) => None,
                (Some(chunk), _) => Some(chunk.due.max(self.paced_until)),
            };
            tokio::select! {
                biased;
                changed = self.control.changed(), if watching => {
                    // An error means the proxy is gone; its drop cancels this task anyway.
                    watching = changed.is_ok();
                }
                () = sleep_until(next_write.unwrap_or_else(Instant::now)), if next_write.is_some() => {
                    if self.write_slice(&toxics, &mut dst).await.is_err() {
                        return End::Reset;
                    }
                }
                read = src.read(&mut buf), if !eof && self.queued < MAX_QUEUED => match read {
                    Ok(0) => eof = true,
                    Ok(n) => self.received(&toxics, &buf[..n]),
                    Err(_) => return End::Reset,
                },
            }
        }
    }

    fn received(&mut self, toxics: &DirectionToxics, data: &[u8]) {
        self.shared.counters.received[self.index()].fetch_add(data.len() as u64, Ordering::Relaxed);
        if toxics.blackhole {
            return;
        }
        let delay = toxics.latency + self.rng.duration(toxics.jitter);
        let due = (Instant::now() + delay).max(self.last_due);
        self.last_due = due;
        self.queued += data.len();
        self.queue.push_back(Chunk {
            data: data.to_vec(),
            sent: 0,
            due,
        });
    }

    /// Writes as much of the head chunk as the bandwidth and byte limits allow.
    async fn write_slice(
        &mut self,
        toxics: &DirectionToxics,
        dst: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<()> {
        let Some(chunk) = self.queue.front_mut() else {
            return Ok(());
        };
        let mut len = chunk.data.len() - chunk.sent;
        if let Some(rate) = toxics.bandwidth {
            len = len.min((rate / SLICES_PER_SECOND).max(1) as usize);
        }
        if let Some((limit, _)) = toxics.cut_limit() {
            len = len.min(limit.saturating_sub(self.since_cut) as usize);
        }
        if len == 0 {
            return Ok(());
        }
        let slice = &chunk.data[chunk.sent..chunk.sent + len];
        dst.write_all(slice).await?;
        chunk.sent += len;
        if chunk.sent == chunk.data.len() {
            self.queue.pop_front();
        }
        self.queued -= len;
        self.since_cut += len as u64;
        self.shared.counters.forwarded[self.index()].fetch_add(len as u64, Ordering::Relaxed);
        if let Some(rate) = toxics.bandwidth {
            let cost = Duration::from_secs_f64(len as f64 / rate as f64);
            self.paced_until = self.paced_until.max(Instant::now()) + cost;
        }
        Ok(())
    }
}
