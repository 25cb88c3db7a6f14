//! gRPC client for the shards over Unix sockets.

pub mod grpc;
pub mod sharded;

pub use grpc::{Client, StepResult, StepTimings};
pub use sharded::{ShardedClient, WarmupParams};
