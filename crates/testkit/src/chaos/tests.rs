//! The proxy against a loopback echo server: each effect, observed from the client's socket,
//! the echo server's count and the proxy's counters.
//!
//! Only latency, bandwidth and slow close are measured in (short, real) time, and only as
//! lower bounds, which the proxy guarantees. Everything else is shown without timing: a
//! blackhole by what arrives after it is lifted, a reset by the error kind, a partial outage
//! by comparing runs.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ChaosProxy, Direction, Toxics};

const MS: Duration = Duration::from_millis(1);

/// A loopback echo server counting the bytes it received; stops when dropped.
struct Echo {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                count.fetch_add(n as u64, Ordering::Relaxed);
                                if socket.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Echo {
            addr,
            received,
            task,
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

async fn setup() -> (Echo, ChaosProxy) {
    let echo = Echo::start().await;
    let proxy = ChaosProxy::start(echo.addr).await.unwrap();
    (echo, proxy)
}

/// Fails the test instead of hanging it.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), test)
        .await
        .expect("the test finishes within 10 s")
}

/// Waits until `check` holds (the proxy's tasks update counters on their own time).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(MS).await;
    }
}

/// Sends `message` and reads as many bytes back.
async fn round_trip(client: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    client.write_all(message).await.unwrap();
    let mut answer = vec![0; message.len()];
    client.read_exact(&mut answer).await.unwrap();
    answer
}

/// Reads until the stream fails, returning what arrived and the error's kind.
async fn read_until_error(client: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match client.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) => return (got, Some(error.kind())),
        }
    }
}

#[tokio::test]
async fn passes_bytes_through_and_counts_them() {
    bounded(async {
        let (echo, proxy) = setup().await;
        assert_eq!(proxy.url(), format!("http://{}", proxy.addr()));
        assert_eq!(proxy.upstream(), echo.addr);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"hello").await, b"hello");
        assert_eq!(round_trip(&mut client, b"again").await, b"again");
        eventually("both directions are counted", || {
            let stats = proxy.stats();
            stats.upstream.forwarded == 10 && stats.downstream.forwarded == 10
        })
        .await;
        let stats = proxy.stats();
        assert_eq!((stats.accepted, stats.affected, stats.open), (1, 1, 1));
        assert_eq!(
            (stats.upstream.received, stats.downstream.received),
            (10, 10)
        );
        assert_eq!(stats.reset, 0);
        assert_eq!(echo.received(), 10);

        drop(client);
        eventually("the connection is closed", || proxy.stats().open == 0).await;
        assert_eq!(
            proxy.stats().reset,
            0,
            "a clean close is passed on as a close"
        );
    })
    .await;
}

#[tokio::test]
async fn latency_delays_each_direction_by_at_least_its_base() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        proxy
            .latency(Direction::Upstream, 40 * MS, Duration::ZERO)
            .latency(Direction::Downstream, 60 * MS, 20 * MS);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
            assert!(started.elapsed() >= 100 * MS, "{:?}", started.elapsed());
        }
    })
    .await;
}

#[tokio::test]
async fn latency_applies_to_an_open_connection_and_clears() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"fast").await, b"fast");

        proxy.latency(Direction::Both, 50 * MS, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, b"slow").await, b"slow");
        assert!(started.elapsed() >= 100 * MS, "{:?}", started.elapsed());

        proxy.clear();
        assert_eq!(proxy.toxics(), Toxics::default());
        assert_eq!(round_trip(&mut client, b"fast").await, b"fast");
    })
    .await;
}

#[tokio::test]
async fn bandwidth_bounds_throughput() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        const RATE: u64 = 100_000;
        const BYTES: usize = 25_000;
        proxy.bandwidth(Direction::Downstream, RATE);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let message: Vec<u8> = (0..BYTES).map(|i| i as u8).collect();
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, &message).await, message);
        // The first slice (1/100 s of the rate) goes at once; the rest is paced.
        let floor = Duration::from_secs_f64((BYTES as u64 - RATE / 100) as f64 / RATE as f64);
        assert!(
            started.elapsed() >= floor,
            "{:?} < {floor:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn reset_all_resets_every_open_connection() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut first, b"one").await, b"one");
        assert_eq!(round_trip(&mut second, b"two").await, b"two");

        // Connected as far as the client knows, though maybe still in the proxy's backlog.
        let mut third = TcpStream::connect(proxy.addr()).await.unwrap();

        proxy.reset_all().await;
        let stats = proxy.stats();
        assert_eq!((stats.open, stats.reset), (0, 3), "{stats:?}");
        for client in [&mut first, &mut second, &mut third] {
            let (got, error) = read_until_error(client).await;
            assert!(got.is_empty());
            assert_eq!(error, Some(ErrorKind::ConnectionReset));
        }

        // Only the connections open at the call: a new one works.
        let mut fourth = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fourth, b"four").await, b"four");
    })
    .await;
}

#[tokio::test]
async fn reset_after_lets_n_bytes_through_then_resets() {
    bounded(async {
        let (echo, proxy) = setup().await;
        proxy.reset_after(Direction::Upstream, 10);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"123456").await, b"123456");
        client.write_all(b"789abc").await.unwrap();
        let (got, error) = read_until_error(&mut client).await;
        assert_eq!(error, Some(ErrorKind::ConnectionReset));
        assert!(
            b"789a".starts_with(&got),
            "at most the 4 bytes left: {got:?}"
        );
        assert_eq!(proxy.stats().upstream.forwarded, 10);
        assert!(echo.received() <= 10);
        assert_eq!(proxy.stats().reset, 1);

        // Each connection counts its own bytes.
        let mut next = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut next, b"123456").await, b"123456");
    })
    .await;
}

#[tokio::test]
async fn reset_after_counts_from_the_change_on_an_open_connection() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"0123456789").await, b"0123456789");

        proxy.reset_after(Direction::Downstream, 3);
        client.write_all(b"abcdef").await.unwrap();
        let (got, error) = read_until_error(&mut client).await;
        assert_eq!(error, Some(ErrorKind::ConnectionReset));
        assert!(b"abc".starts_with(&got), "{got:?}");
        assert_eq!(proxy.stats().downstream.forwarded, 13);
    })
    .await;
}

#[tokio::test]
async fn close_after_truncates_and_closes_gracefully() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        proxy.close_after(Direction::Downstream, 6);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"hello world").await.unwrap();
        let (got, error) = read_until_error(&mut client).await;
        assert_eq!(got, b"hello ");
        assert_eq!(error, None, "a FIN, not a reset");
        // The proxy reads on until the client closes too (closing with unread data is a RST).
        drop(client);
        eventually("the connection is closed", || proxy.stats().open == 0).await;
        assert_eq!(proxy.stats().reset, 0);
    })
    .await;
}

#[tokio::test]
async fn slow_close_holds_the_fin() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        proxy.slow_close(Direction::Downstream, 150 * MS);

        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"bye").await.unwrap();
        let started = Instant::now();
        // The echo server answers and closes when it sees ours; the proxy holds that close.
        client.shutdown().await.unwrap();
        let (got, error) = read_until_error(&mut client).await;
        assert_eq!((got.as_slice(), error), (&b"bye"[..], None));
        assert!(started.elapsed() >= 150 * MS, "{:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn blackhole_reads_but_never_forwards() {
    bounded(async {
        let (echo, proxy) = setup().await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();

        // Requests vanish: the proxy reads them, the echo server never sees them.
        proxy.blackhole(Direction::Upstream, true);
        client.write_all(b"lost").await.unwrap();
        eventually("the proxy read the request", || {
            proxy.stats().upstream.received == 4
        })
        .await;
        assert_eq!(proxy.stats().upstream.forwarded, 0);
        assert_eq!(echo.received(), 0);

        // Lifted, the next request goes through; the swallowed one never comes.
        proxy.blackhole(Direction::Upstream, false);
        assert_eq!(round_trip(&mut client, b"seen").await, b"seen");
        assert_eq!(echo.received(), 4);

        // Answers vanish: the echo server answers, the client gets nothing.
        proxy.blackhole(Direction::Downstream, true);
        client.write_all(b"gone").await.unwrap();
        eventually("the proxy read the answer", || {
            proxy.stats().downstream.received == 8
        })
        .await;
        assert_eq!(proxy.stats().downstream.forwarded, 4);
        proxy.blackhole(Direction::Downstream, false);
        assert_eq!(round_trip(&mut client, b"next").await, b"next");
    })
    .await;
}

#[tokio::test]
async fn refuse_closes_the_listener_until_told_to_accept_again() {
    bounded(async {
        let (_echo, proxy) = setup().await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();

        proxy.refuse(true).await.unwrap();
        let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            round_trip(&mut open, b"still").await,
            b"still",
            "open connections go on"
        );

        proxy.refuse(false).await.unwrap();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"back").await, b"back");
        assert_eq!(proxy.stats().accepted, 2);
    })
    .await;
}

/// Which of 16 sequential connections get an answer with `close_after(0)` on a seeded half.
async fn answered(seed: u64) -> Vec<bool> {
    let (_echo, proxy) = setup().await;
    proxy.partial(0.5, seed).close_after(Direction::Upstream, 0);
    let mut answered = Vec::new();
    for _ in 0..16 {
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        // An affected connection is closed at once; writing to it may already fail.
        let _ = client.write_all(b"x").await;
        let mut answer = [0u8; 1];
        answered.push(client.read_exact(&mut answer).await.is_ok());
    }
    let expected: Vec<bool> = (0..16).map(|n| !proxy.toxics().affects(n)).collect();
    assert_eq!(
        answered, expected,
        "the connections `Toxics::affects` names"
    );
    let affected = answered.iter().filter(|ok| !**ok).count() as u64;
    assert_eq!(proxy.stats().affected, affected);
    answered
}

#[tokio::test]
async fn partial_outage_hits_the_same_connections_for_the_same_seed() {
    bounded(async {
        let first = answered(7).await;
        assert!(first.contains(&true) && first.contains(&false), "{first:?}");
        assert_eq!(answered(7).await, first);
        assert_ne!(answered(8).await, first, "another seed, other connections");
    })
    .await;
}

#[test]
fn partial_selection_grows_with_the_fraction() {
    let mut toxics = Toxics::default();
    assert!((0..1000).all(|n| toxics.affects(n)), "all by default");
    toxics.seed = 42;
    toxics.fraction = 0.0;
    assert!((0..1000).all(|n| !toxics.affects(n)));

    toxics.fraction = 0.2;
    let small: Vec<u64> = (0..1000).filter(|&n| toxics.affects(n)).collect();
    toxics.fraction = 0.6;
    let large: Vec<u64> = (0..1000).filter(|&n| toxics.affects(n)).collect();
    assert!(small.iter().all(|n| large.contains(n)));
    assert!((150..250).contains(&small.len()), "{}", small.len());
    assert!((550..650).contains(&large.len()), "{}", large.len());
}

#[tokio::test]
async fn dropping_the_proxy_stops_every_task() {
    bounded(async {
        let echo = Echo::start().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();

        let proxy = ChaosProxy::start(echo.addr).await.unwrap();
        let addr = proxy.addr();
        let handle = proxy.clone();
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut first, b"a").await, b"a");
        assert_eq!(round_trip(&mut second, b"b").await, b"b");
        assert!(metrics.num_alive_tasks() > before);

        drop(proxy);
        assert_eq!(
            round_trip(&mut first, b"c").await,
            b"c",
            "a clone keeps it running"
        );
        drop(handle);
        for client in [&mut first, &mut second] {
            let (got, _) = read_until_error(client).await;
            assert!(got.is_empty());
        }
        eventually("every proxy task (and the echo tasks it fed) ended", || {
            metrics.num_alive_tasks() == before
        })
        .await;
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    })
    .await;
}
