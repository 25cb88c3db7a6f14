//! tgi-rs shard: loads a model, keeps a paged KV cache and serves TGI's v3 gRPC protocol.
//!
//! Layout: `weights/` (where tensors come from), `models/` (architectures), `layers/`
//! (shared building blocks), `kv/` (paged cache + attention), `parallel/` (tensor
//! parallelism), `sampling/` (logits processors and token choice), `engine/` (batches,
//! prefill/decode steps, stopping, detokenization), `server/` (the gRPC service), `kernels/`
//! (launchers of the own CUDA kernels in `shard/kernels/`, `cuda` feature), `timer` (device
//! time per forward phase in debug traces).

pub mod device;
pub mod engine;
pub mod error;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod kv;
pub mod layers;
pub mod models;
pub mod parallel;
pub mod sampling;
pub mod server;
pub mod timer;
pub mod weights;

pub use error::{Result, ShardError};
