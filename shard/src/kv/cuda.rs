//! The paged KV cache on a CUDA device with the own kernels: rotary + K/V write fused into one
//! launch; decode attention and prompt (prefill) attention both reading K/V through each
//! sequence's slot table (no gather). Where neither kernel applies (f32, other head sizes),
//! forwards with long prompt chunks use [`TensorPagedCache`]'s matmul attention over the same
//! cache tensors.

use super::{
    AttentionMetadata, ForwardKey, LayerOrder, PagedAttention, QkvLayout, TensorPagedCache,
    BLOCK_SIZE,
};
use crate::error::{Result, ShardError};
use crate::kernels::{self, FlashPrefillArgs, PagedAttentionArgs};
use crate::layers::rotary::Rope;
use candle_core::{DType, Device, Tensor};

/// A forward where some sequence has at least this many new tokens uses the prefill kernel
/// (tensor cores, each K/V tile shared by up to 64 queries); below it the paged-attention
/// kernel's per-token blocks are as fast and need no tiles.
const MIN_FLASH_QUERIES: usize = 16;
/// Without the prefill kernel, sequences with at most this many new tokens use the
/// paged-attention kernel (one block per token and KV head, so short prompts in a batch cost
/// one launch per layer instead of one matmul piece per sequence); a forward with a longer
/// chunk goes through the matmul path, which reuses each K/V tile across queries.
const MAX_KERNEL_QUERIES: usize = 256;
/// CUDA's limit on a grid's y and z dimensions, which count the paged kernel's query tokens and
/// the prefill kernel's query tiles.
const MAX_KERNEL_TOKENS: usize = 65535;
/// Most split-K scratch (partial sums of long ranges) the kernel path may allocate; prompt
/// chunks over long contexts above it take the matmul path instead.
const MAX_KERNEL_SCRATCH: usize = 256 << 20;

/// Paged KV cache on a CUDA device.
#[derive(Debug)]
pub struct CudaPagedCache {
    tensor: TensorPagedCache,
    plan: Option<KernelPlan>,
    order: LayerOrder,
    /// The plan is fixed by [`CudaPagedCache::pin_plan`] (a CUDA graph's static buffers)
    /// and is not rebuilt from the metadata.
    pinned: bool,
}

/// Device copies of one forward's metadata, shared by every layer.
#[derive(Debug)]
struct KernelPlan {
    key: ForwardKey,
    slots: Tensor,
    attention: AttentionPlan,
}

/// Which kernel runs one forward's attention.
#[derive(Debug)]
enum AttentionPlan {
    /// Decode-sized chunks: one block per token and head group.
    Paged(PagedAttentionArgs),
    /// Prompt chunks: query tiles on tensor cores.
    Flash(FlashPrefillArgs),
    /// Neither kernel applies: [`TensorPagedCache`]'s matmul attention.
    Matmul,
}

impl AttentionPlan {
    /// The plan's name, for tests and logs.
    fn name(&self) -> &'static str {
        match self {
            AttentionPlan::Paged(_) => "paged",
            AttentionPlan::Flash(_) => "flash",
            AttentionPlan::Matmul => "matmul",
        }
    }
}

impl CudaPagedCache {
    /// A zeroed cache of `num_blocks` blocks per layer in `dtype` on the CUDA `device`.
    pub fn new(
        layers: usize,
        num_blocks: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !device.is_cuda() {
            return Err(ShardError::InvalidArgument(format!(
                "CudaPagedCache needs a CUDA device, got {device:?}"
            )));
        }
        Ok(Self {
            tensor: TensorPagedCache::new(layers, num_blocks, kv_heads, head_dim, dtype, device)?,
            plan: None,
            order: LayerOrder::default(),
            pinned: false,
        })
    }

    /// Makes the following forwards write K/V at `slots` and attend through `attention`
    /// (device buffers the caller keeps filled), whatever metadata they pass, until
    /// [`CudaPagedCache::unpin_plan`]. Launch shapes then depend on `attention.max_keys`
    /// only, which is what lets a CUDA graph captured from such a forward be replayed with
    /// new buffer contents. The caller range-checks every slot it puts in the buffers.
    pub fn pin_plan(&mut self, slots: Tensor, attention: PagedAttentionArgs) {
        self.plan = Some(KernelPlan {
            key: ForwardKey::of(&AttentionMetadata::default(), 0),
            slots,
            attention: AttentionPlan::Paged(attention),
        });
        self.pinned = true;
    }

    /// Goes back to plans built from each forward's metadata.
    pub fn unpin_plan(&mut self) {
        self.plan = None;
        self.pinned = false;
    }

    /// Slots in the cache (block 0's included).
    pub fn num_slots(&self) -> usize {
        self.tensor.num_blocks() * BLOCK_SIZE
    }

    /// Keys and values of `layer`, `[slots, kv_heads, head_dim]` each.
    pub fn layer(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        self.tensor.layer(layer)
    }

    /// Which attention the last forward ran: "paged", "flash" or "matmul".
    pub fn attention_path(&self) -> Option<&'static str> {
        self.plan.as_ref().map(|p| p.attention.name())
    }

    /// Builds the plan on a forward's first layer and reuses it for the others.
    fn plan_for(
        &mut self,
        layer: usize,
        meta: &AttentionMetadata,
        heads: usize,
    ) -> Result<&KernelPlan> {
        self.update_plan(layer, meta, heads)?;
        self.plan()
    }

    fn plan(&self) -> Result<&KernelPlan> {
        self.plan
            .as_ref()
            .ok_or_else(|| ShardError::InvalidArgument("attention plan missing after build".into()))
    }

    fn update_plan(&mut self, layer: usize, meta: &AttentionMetadata, heads: usize) -> Result<()> {
        if self.pinned {
            return Ok(());
        }
        let reusable = self.order.continues(layer)
            && self
                .plan
                .as_ref()
                .is_some_and(|p| p.key.matches(meta, heads));
        if !reusable {
            self.plan = None;
            self.plan = Some(self.build_plan(meta, heads)?);
        }
        Ok(())
    }

    fn build_plan(&self, meta: &AttentionMetadata, heads: usize) -> Result<KernelPlan> {
        meta.validate(self.tensor.num_blocks() * BLOCK_SIZE)?;
        let dev = self.tensor.layer(0)?.0.device().clone();
        let mut per_seq = vec![0usize; meta.seq_slots.len()];
        for &s in &meta.token_seq {
            per_seq[s as usize] += 1;
        }
        let (kc, _) = self.tensor.layer(0)?;
        let (kvh, d, dtype) = (kc.dim(1)?, kc.dim(2)?, kc.dtype());
        let longest = per_seq.iter().copied().max().unwrap_or(0);
        let keys = meta
            .token_pos
            .iter()
            .map(|&p| p as usize + 1 - meta.window_start(p as usize))
            .max()
            .unwrap_or(1);
        let window = meta.sliding_window.unwrap_or(0);
        let slot_tables = || -> Result<(Tensor, Tensor)> {
            let mut offsets = Vec::with_capacity(meta.seq_slots.len());
            let mut table = Vec::with_capacity(meta.seq_slots.iter().map(Vec::len).sum());
            for slots in &meta.seq_slots {
                offsets.push(table.len() as u32);
                table.extend_from_slice(slots);
            }
            Ok((
                Tensor::new(offsets.as_slice(), &dev)?,
                Tensor::new(table.as_slice(), &dev)?,
            ))
        };
        let tiles = (kernels::flash_prefill_supported(d, dtype) && longest >= MIN_FLASH_QUERIES)
            .then(|| kernels::prefill_tiles(&meta.token_seq, &meta.token_pos, window))
            .filter(|tiles| tiles.len() <= MAX_KERNEL_TOKENS);
        let attention = if let Some(tiles) = tiles {
            let (seq_off, slot_table) = slot_tables()?;
            let flat: Vec<u32> = tiles.iter().flatten().copied().collect();
            AttentionPlan::Flash(FlashPrefillArgs {
                tiles: Tensor::new(flat.as_slice(), &dev)?,
                seq_off,
                slot_table,
                window,
                scale: meta.softmax_scale,
            })
        } else if kernels::paged_attention_supported(d, dtype)
            && meta.num_tokens() <= MAX_KERNEL_TOKENS
            && longest <= MAX_KERNEL_QUERIES
            && kernels::paged_attention_scratch_bytes(meta.num_tokens(), heads, kvh, d, dtype, keys)
                .is_some_and(|bytes| bytes <= MAX_KERNEL_SCRATCH)
        {
            let (seq_off, slot_table) = slot_tables()?;
            AttentionPlan::Paged(PagedAttentionArgs {
                token_seq: Tensor::new(meta.token_seq.as_slice(), &dev)?,
                token_pos: Tensor::new(meta.token_pos.as_slice(), &dev)?,
                seq_off,
                slot_table,
                max_keys: keys,
                window,
                scale: meta.softmax_scale,
                split_counters: kernels::paged_attention_counters(meta.num_tokens(), heads, &dev)?,
            })
        } else {
            AttentionPlan::Matmul
        };
        Ok(KernelPlan {
            key: ForwardKey::of(meta, heads),
            slots: Tensor::new(meta.token_slots.as_slice(), &dev)?,
            attention,
        })
    }

    /// Attention of `q` once the new tokens' K/V are in the cache; the caller has planned
    /// this layer already (planning again here would rebuild the plan on every layer).
    fn attend(&mut self, layer: usize, q: &Tensor, meta: &AttentionMetadata) -> Result<Tensor> {
        match &self.plan()?.attention {
            AttentionPlan::Paged(args) => {
                let (kc, vc) = self.tensor.layer(layer)?;
                Ok(kernels::paged_attention(q, kc, vc, args)?.to_dtype(q.dtype())?)
            }
            AttentionPlan::Flash(args) => {
                let (kc, vc) = self.tensor.layer(layer)?;
                Ok(kernels::flash_prefill(q, kc, vc, args)?.to_dtype(q.dtype())?)
            }
            AttentionPlan::Matmul => self.tensor.attend_written(layer, q, meta),
        }
    }
}

impl PagedAttention for CudaPagedCache {
    fn num_blocks(&self) -> usize {
        self.tensor.num_blocks()
    }

    fn as_cuda_mut(&mut self) -> Option<&mut CudaPagedCache> {
        Some(self)
    }

    fn forward(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        if q.dim(0)? != meta.num_tokens() {
            return Err(ShardError::InvalidArgument(format!(
                "attention metadata has {} tokens, q has {}",
                meta.num_tokens(),
                q.dim(0)?
            )));
        }
        let slots = self.plan_for(layer, meta, q.dim(1)?)?.slots.clone();
        let (kc, vc) = self.tensor.layer(layer)?;
        kernels::write_kv(k, v, &slots, kc, vc)?;
        self.attend(layer, q, meta)
    }

    fn forward_qkv(
        &mut self,
        layer: usize,
        qkv: &Tensor,
        layout: QkvLayout,
        rope: &Rope,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        let (kc, _) = self.tensor.layer(layer)?;
        let fusable = qkv.dtype() == kc.dtype()
            && rope.cos.dtype() == kc.dtype()
            && kc.dims3()? == (kc.dim(0)?, layout.kv_heads, layout.head_dim);
        if !fusable {
            return super::unfused_forward_qkv(self, layer, qkv, layout, rope, meta);
        }
        if qkv.dim(0)? != meta.num_tokens() {
            return Err(ShardError::InvalidArgument(format!(
                "attention metadata has {} tokens, qkv has {}",
                meta.num_tokens(),
                qkv.dim(0)?
            )));
        }
        let slots = self.plan_for(layer, meta, layout.heads)?.slots.clone();
        let (kc, vc) = self.tensor.layer(layer)?;
        let t = qkv.dim(0)?;
        let half = layout.head_dim / 2;
        let q = kernels::rope_qkv(
            &qkv.contiguous()?,
            &rope.cos.reshape((t, half))?,
            &rope.sin.reshape((t, half))?,
            &slots,
            kc,
            vc,
            layout.heads,
            rope.interleaved,
        )?;
        self.attend(layer, &q, meta)
    }
}
