//! The paged KV cache: fixed-size blocks of token slots, block tables per sequence, and
//! attention that reads keys/values through them.

pub mod block_allocator;
pub mod cpu;
mod metadata;
pub mod tensor;

pub use block_allocator::BlockAllocator;
pub use cpu::CpuPagedCache;
pub use metadata::AttentionMetadata;
pub use tensor::TensorPagedCache;

use crate::error::Result;
use candle_core::Tensor;

/// Tokens per KV block.
pub const BLOCK_SIZE: usize = 16;

/// Storage for every layer's keys and values plus the attention that reads them.
///
/// One call does both halves so a backend can fuse them: the new tokens' K/V are written at
/// their slots, then each query token attends to its own sequence's cached tokens up to its
/// position. Prefill, chunked prefill and decode are the same operation.
pub trait PagedAttention: Send {
    /// `q`: `[T, heads, head_dim]`, `k`/`v`: `[T, kv_heads, head_dim]` -> `[T, heads * head_dim]`.
    fn forward(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        meta: &AttentionMetadata,
    ) -> Result<Tensor>;
    /// Blocks in the cache (block 0 included).
    fn num_blocks(&self) -> usize;
}
