//! Connections the server owns, so a handler can tear down its caller's connection.
//!
//! tonic gives a handler no access to the socket it is answering on. So the server accepts its
//! own connections: every `TcpStream` is wrapped in a [`TrackedStream`] and registered by peer
//! address, with a kill switch, before hyper sees it. The wrapper reports the stream's
//! `TcpConnectInfo`, so `Request::remote_addr()` still names the caller; a handler kills the
//! connection registered under that address. A killed wrapper fails every later read and write
//! with `ConnectionReset` and wakes the task that polls it, so hyper drops the connection at
//! once (without a last GOAWAY, which it cannot write), the socket closes, and the client sees
//! the connection break under its in-flight calls. No response written after the kill can
//! reach the client: the handler returns only after flipping the switch.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The open connections, by peer address.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<SocketAddr, Arc<KillSwitch>>>,
}

impl Connections {
    /// Wraps and registers an accepted stream.
    pub(crate) fn track(self: &Arc<Self>, stream: TcpStream) -> TrackedStream {
        let switch = Arc::new(KillSwitch::default());
        let peer = stream.peer_addr().ok();
        if let Some(peer) = peer {
            self.lock().insert(peer, Arc::clone(&switch));
        }
        TrackedStream {
            inner: stream,
            switch,
            peer,
            registry: Arc::downgrade(self),
        }
    }

    /// Kills the connection from `peer`; false if there is none.
    pub(crate) fn kill(&self, peer: SocketAddr) -> bool {
        let switch = self.lock().get(&peer).cloned();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<KillSwitch>>> {
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
    switch: Arc<KillSwitch>,
    peer: Option<SocketAddr>,
    registry: Weak<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if let (Some(peer), Some(registry)) = (self.peer, self.registry.upgrade()) {
            let mut open = registry.lock();
            // The peer's port may already belong to a newer connection; remove only our own.
            if open
                .get(&peer)
                .is_some_and(|switch| Arc::ptr_eq(switch, &self.switch))
            {
                open.remove(&peer);
            }
        }
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
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
