//! End-to-end tests of the whole path — caller → layers → `QdrantService` → gRPC → the embedded
//! server (Qdrant's engine) — under the testkit's chaos proxy and fault injection.
//!
//! The `chaos` module's faults come from the chaos proxy alone, so it runs against a real Qdrant
//! too: with `QDRANT_URL` (and `QDRANT_API_KEY`) set, its proxy stands in front of that server
//! (`QDRANT_URL=http://127.0.0.1:6334 cargo test --test e2e chaos::`). The other modules use the
//! embedded server's fault injection and always start their own.
//!
//! One test binary (modules below) rather than one per file: each binary links Qdrant's engine,
//! and CI pays for every link.

mod admin;
mod backend;
mod cache;
mod capture;
mod chaos;
mod cluster;
mod degrade;
mod endpoints;
mod faults;
mod front_door;
mod observe;
mod pool;
mod queue_kill;
mod reload;
mod saga;
mod stack;
