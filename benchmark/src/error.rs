//! The benchmark's error type.

/// What can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Could not reach the shard.
    #[error("connecting to the shard: {0}")]
    Connect(String),
    /// Could not start the shard.
    #[error("starting the shard: {0}")]
    Spawn(String),
    /// An RPC failed.
    #[error("{rpc} failed: {status}")]
    Rpc {
        /// Which RPC.
        rpc: &'static str,
        /// gRPC status.
        status: tonic::Status,
    },
    /// The shard answered something unexpected.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// Could not start the launcher (or it exited before the router was ready).
    #[error("starting the launcher: {0}")]
    Launch(String),
    /// An HTTP request to the router failed at the transport level or with an error status.
    #[error("HTTP: {0}")]
    Http(String),
    /// The command-line arguments do not describe a run.
    #[error("{0}")]
    Usage(String),
}
