//! Connections the server owns, so a handler can tear down its caller's connection.
//!
//! tonic gives a handler no access to the socket it is answering on. So the server accepts its
//! own connections: every `TcpStream` is wrapped in a [`TrackedStream`] and registered under a
//! connection id (1, 2, 3… per server, across restarts), with a kill switch, before hyper sees
//! it. The wrapper reports a [`ConnInfo`] (the id and the peer's address), which tonic puts in
//! every request's extensions; a handler reads it and kills the connection registered under
//! that id. A killed wrapper fails every later read and write
//! with `ConnectionReset` and wakes the task that polls it, so hyper drops the connection at
//! once (without a last GOAWAY, which it cannot write), the socket closes, and the client sees
//! the connection break under its in-flight calls. No response written after the kill can
//! reach the client: the handler returns only after flipping the switch.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// What a request knows of its connection: tonic copies it into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The server's id of the connection, from 1.
    pub(crate) id: u64,
    /// The client's address (through a proxy: the proxy's).
    pub(crate) remote_addr: Option<SocketAddr>,
}

/// The open connections, by connection id. One registry serves a server across restarts, so
/// ids are never reused.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<u64, Arc<KillSwitch>>>,
    last_id: AtomicU64,
}

impl Connections {
    /// Wraps and registers an accepted stream under a new id.
    pub(crate) fn track(self: &Arc<Self>, stream: TcpStream) -> TrackedStream {
        let switch = Arc::new(KillSwitch::default());
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, Arc::clone(&switch));
        TrackedStream {
            info: ConnInfo {
                id,
                remote_addr: stream.peer_addr().ok(),
            },
            inner: stream,
            switch,
            registry: Arc::downgrade(self),
        }
    }

    /// Kills connection `id`; false if it is not open.
    pub(crate) fn kill(&self, id: u64) -> bool {
        let switch = self.lock().get(&id).cloned();
        switch.map(|switch| switch.kill()).is_some()
    }

    /// Kills every open connection; how many there were.
    pub(crate) fn kill_all(&self) -> usize {
        let switches: Vec<_> = self.lock().values().cloned().collect();
        for switch in &switches {
            switch.kill();
        }
        switches.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<KillSwitch>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared between a stream and the registry: the flag, and the waker of the task polling the
/// stream (hyper's connection task), so a kill is noticed even while that task sleeps.
#[derive(Debug, Default)]
struct KillSwitch {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl KillSwitch {
    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Remembers the waker of a poll about to return `Pending`.
    fn park(&self, cx: &Context<'_>) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection dropped by an injected fault",
    )
}

/// A server-side connection that the fault injector can kill.
#[derive(Debug)]
pub(crate) struct TrackedStream {
    inner: TcpStream,
    info: ConnInfo,
    switch: Arc<KillSwitch>,
    registry: Weak<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().remove(&self.info.id);
        }
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_pending() {
            self.switch.park(cx);
            // A kill between the check above and `park` would otherwise go unnoticed.
            if self.switch.is_killed() {
                return Poll::Ready(Err(killed()));
            }
        }
        poll
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if poll.is_pending() {
            self.switch.park(cx);
            if self.switch.is_killed() {
                return Poll::Ready(Err(killed()));
            }
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if poll.is_pending() {
            self.switch.park(cx);
            if self.switch.is_killed() {
                return Poll::Ready(Err(killed()));
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
