//! A fault-injecting TCP proxy, [`ChaosProxy`], to put between a client and a server.
//!
//! The proxy listens on `127.0.0.1` and forwards every connection to one upstream address. A
//! test changes its effects ("toxics") at any moment through the handle; most apply per
//! [`Direction`]: `Upstream` is client → server (requests), `Downstream` server → client
//! (responses), `Both` sets both.
//!
//! | Effect | Method | Scope | What the peers see | Open connections |
//! |---|---|---|---|---|
//! | latency + jitter | [`latency(dir, base, jitter)`](ChaosProxy::latency) | direction | every chunk arrives `base` + U[0, `jitter`] later, in order | data read after the change |
//! | bandwidth | [`bandwidth(dir, bytes_per_sec)`](ChaosProxy::bandwidth) | direction | at most that many bytes/s per connection (0: nothing) | yes |
//! | blackhole | [`blackhole(dir, on)`](ChaosProxy::blackhole) | direction | data (and FIN) read and dropped: no answer, the client times out | yes |
//! | reset after N bytes | [`reset_after(dir, n)`](ChaosProxy::reset_after) | direction | after N more bytes, RST to both sides | yes, N counted from the change |
//! | close after N bytes | [`close_after(dir, n)`](ChaosProxy::close_after) | direction | after N more bytes, FIN to both sides: a truncated message | yes, N counted from the change |
//! | slow close | [`slow_close(dir, delay)`](ChaosProxy::slow_close) | direction | FIN (and `close_after`'s close) arrives `delay` late | yes |
//! | reset all | [`reset_all()`](ChaosProxy::reset_all) | connections | RST to every open connection, now | only those |
//! | refuse | [`refuse(on)`](ChaosProxy::refuse) | listener | listening socket closed: connection refused; `false` listens again on the same port | new only |
//! | partial outage | [`partial(fraction, seed)`](ChaosProxy::partial) | connections | the direction effects hit only a seeded, reproducible fraction of connections | yes |
//! | counters | [`stats()`](ChaosProxy::stats) | proxy | connections accepted, affected, open, reset; bytes received and forwarded each way | — |
//!
//! [`clear`](ChaosProxy::clear) removes every effect; [`set`](ChaosProxy::set) and
//! [`update`](ChaosProxy::update) change several at once through [`Toxics`].
//!
//! What each one does to a gRPC client (tonic over HTTP/2), as the workspace's `tests/chaos.rs`
//! shows: a reset or a close mid-call fails the call as a broken connection (the request may
//! have been applied), a refused connection fails it before anything was sent, a blackhole or
//! latency over the request timeout ends in the client's own timeout.

mod connection;
mod proxy;
mod toxic;

pub use proxy::{ChaosProxy, ProxyStats, Traffic};
pub use toxic::{Direction, DirectionToxics, Toxics};

#[cfg(test)]
mod tests;
