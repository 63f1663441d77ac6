//! Errors of starting and stopping a [`TestServer`](crate::TestServer).

use std::io;
use std::path::PathBuf;

/// Why a [`TestServer`](crate::TestServer) could not start or shut down cleanly.
///
/// Errors of the requests the server answers are not `TestkitError`s: they reach the client as
/// `tonic::Status`, exactly as a real Qdrant would send them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// The data directory could not be created or read.
    #[error("cannot use data directory {}: {source}", path.display())]
    DataDir {
        /// The directory that failed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A collection found in a persistent data directory could not be loaded.
    #[error("cannot load collection `{name}` from {}: {message}", path.display())]
    LoadCollection {
        /// The collection's name.
        name: String,
        /// Its directory.
        path: PathBuf,
        /// The engine's error.
        message: String,
    },
    /// The listener could not be bound to its address (the message names it).
    #[error("cannot bind the gRPC listener on {0}")]
    Bind(#[source] io::Error),
    /// The server task or a storage task failed (panicked, or the engine reported an error).
    #[error("testkit server failure: {0}")]
    Server(String),
}
