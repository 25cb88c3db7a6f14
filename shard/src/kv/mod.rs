//! The paged KV cache: fixed-size blocks of token slots, block tables per sequence, and
//! attention that reads keys/values through them.

pub mod block_allocator;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod metadata;
pub mod tensor;
#[cfg(test)]
pub(crate) mod test_layout;

pub use block_allocator::BlockAllocator;
pub use cpu::CpuPagedCache;
#[cfg(feature = "cuda")]
pub use cuda::CudaPagedCache;
pub use metadata::AttentionMetadata;
pub(crate) use metadata::{ForwardKey, LayerOrder};
pub use tensor::TensorPagedCache;

use crate::error::{Result, ShardError};
use crate::layers::rotary::Rope;
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

    /// The CUDA cache behind this one, for CUDA-graph capture (which pins its plan).
    #[cfg(feature = "cuda")]
    fn as_cuda_mut(&mut self) -> Option<&mut CudaPagedCache> {
        None
    }

    /// Attention from a packed QKV projection: rotary on queries and keys, then
    /// [`PagedAttention::forward`]. Backends with a fused kernel (rotary + cache write in one
    /// launch) override it.
    fn forward_qkv(
        &mut self,
        layer: usize,
        qkv: &Tensor,
        layout: QkvLayout,
        rope: &Rope,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        unfused_forward_qkv(self, layer, qkv, layout, rope, meta)
    }
}

/// [`PagedAttention::forward_qkv`] without fusion: split, rotate, then `forward`. The trait's
/// default, and the fallback of backends whose fused kernel does not apply.
pub fn unfused_forward_qkv<C: PagedAttention + ?Sized>(
    cache: &mut C,
    layer: usize,
    qkv: &Tensor,
    layout: QkvLayout,
    rope: &Rope,
    meta: &AttentionMetadata,
) -> Result<Tensor> {
    let (q, k, v) = layout.split(qkv)?;
    let (q, k) = (rope.apply(&q)?, rope.apply(&k)?);
    cache.forward(layer, &q, &k, &v, meta)
}

/// Head counts of a packed QKV projection `[T, (heads + 2 * kv_heads) * head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkvLayout {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
}

impl QkvLayout {
    /// Width of the packed projection.
    pub fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// `q` `[T, heads, d]`, `k` and `v` `[T, kv_heads, d]` views of `qkv`.
    pub fn split(&self, qkv: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (t, w) = qkv.dims2()?;
        if w != self.width() {
            return Err(ShardError::InvalidArgument(format!(
                "packed QKV has width {w}, expected {} for {self:?}",
                self.width()
            )));
        }
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        Ok((
            qkv.narrow(1, 0, h * d)?.reshape((t, h, d))?,
            qkv.narrow(1, h * d, kvh * d)?.reshape((t, kvh, d))?,
            qkv.narrow(1, (h + kvh) * d, kvh * d)?
                .reshape((t, kvh, d))?,
        ))
    }
}
