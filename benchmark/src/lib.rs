//! Shared code of the tgi-rs benchmark binaries: a gRPC client for shards (and a shard started
//! for a run), the shard prefill/decode measurement, percentiles, and the error type.
//!
//! `text-generation-benchmark` measures a shard alone; `text-generation-router-benchmark`
//! measures the whole HTTP stack and compares it with the shard measured here, so both use the
//! same decode timing code.

pub mod decode;
pub mod error;
pub mod shard_client;
pub mod stats;
