//! End-to-end tests of the whole path — caller → layers → `QdrantService` → gRPC → the embedded
//! server (Qdrant's engine) — under the testkit's chaos proxy and fault injection.
//!
//! One test binary (modules below) rather than one per file: each binary links Qdrant's engine,
//! and CI pays for every link.

mod chaos;
mod faults;
mod stack;
