//! Launcher of `kernels/paged_attention.cu`: attention of new tokens through each sequence's
//! slot table, split over the sequence for long contexts (the last split of a row merges).

use super::launch::Launch;
use super::{alloc, cuda_device, ptx, suffix, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::{DType, Device, Tensor};

/// Most key positions one block handles (shared memory holds their slots).
const MAX_SPLIT: usize = 512;
/// Fewest key positions worth a block of their own (small batches split short contexts
/// this fine so that enough blocks run at once).
const MIN_SPLIT: usize = 32;
/// Blocks to aim for: two per SM of an H100, so batch-1 decode fills the GPU.
const TARGET_BLOCKS: usize = 264;
/// The kernel's `PA_THREADS` (its launch bounds assume it).
const THREADS: u32 = 128;

/// Whether the kernel handles heads of `head_dim` in `dtype`: a power-of-two number of
/// 16-byte vectors per row, at most 32 (a warp's lanes).
pub fn paged_attention_supported(head_dim: usize, dtype: DType) -> bool {
    let vec = 16 / dtype.size_in_bytes().max(1);
    let lanes = head_dim / vec;
    suffix(dtype).is_ok() && head_dim.is_multiple_of(vec) && lanes.is_power_of_two() && lanes <= 32
}

/// Most query heads per block (the kernel is instantiated for each group size up to it).
const MAX_GROUP: usize = 8;
/// Dynamic shared memory available without an opt-in.
const SHARED_BYTES: usize = 48 * 1024;

/// Query heads one block handles: the largest divisor of the GQA group size up to
/// `MAX_GROUP` (they share a KV head, so its rows are read once for all of them).
fn group(heads: usize, kv_heads: usize) -> usize {
    let g = heads / kv_heads.max(1);
    (1..=g.min(MAX_GROUP))
        .rev()
        .find(|d| g.is_multiple_of(*d))
        .unwrap_or(1)
}

/// Dynamic shared memory of a launch: the split's slots, every lane group's partial results
/// (`groups * gb * (d + 2)` floats) and the merge's split weights.
fn shared_bytes(gb: usize, vec: usize, d: usize, split_len: usize, splits: usize) -> usize {
    let groups = THREADS as usize * vec / d.max(1);
    (split_len + groups * gb * (d + 2) + gb * splits) * 4
}

/// Longest split whose slots fit in shared memory beside the partial results.
fn max_split(gb: usize, vec: usize, d: usize) -> usize {
    let fixed = shared_bytes(gb, vec, d, 0, 0);
    (SHARED_BYTES.saturating_sub(fixed) / 4 / 32 * 32).clamp(32, MAX_SPLIT)
}

/// `(num_splits, split_len)` for `rows` blocks per split attending to up to `keys` keys,
/// splits at most `max_len` long, aiming for `target_blocks` blocks.
fn splits_for(rows: usize, keys: usize, max_len: usize, target_blocks: usize) -> (usize, usize) {
    let keys = keys.max(1);
    let n = target_blocks
        .div_ceil(rows.max(1))
        .min(keys.div_ceil(MIN_SPLIT))
        .max(keys.div_ceil(max_len))
        .max(1);
    let len = keys.div_ceil(n).next_multiple_of(32).min(max_len);
    (keys.div_ceil(len), len)
}

/// Per-forward inputs of [`paged_attention`], uploaded once and shared by every layer.
#[derive(Debug)]
pub struct PagedAttentionArgs {
    /// `[T]` u32: sequence of each query token.
    pub token_seq: Tensor,
    /// `[T]` u32: position of each query token.
    pub token_pos: Tensor,
    /// `[seqs]` u32: where each sequence's slots start in `slot_table`.
    pub seq_off: Tensor,
    /// u32 slots of every position of every sequence, concatenated.
    pub slot_table: Tensor,
    /// Longest key range a query attends to.
    pub max_keys: usize,
    /// Attend to the last `window` positions only (0: all).
    pub window: usize,
    /// Softmax scale.
    pub scale: f32,
    /// u32 zeros, one per (token, head) at least ([`paged_attention_counters`]): the splits
    /// of a row count themselves here so that the last one merges them, and it resets the
    /// count, so one buffer serves every layer and, in a CUDA graph, every replay.
    pub split_counters: Tensor,
}

/// The launch of `t` query tokens of `heads` heads (`kv_heads` KV heads, head dim `d`)
/// attending to up to `max_keys` keys: `(splits, split_len, shared memory bytes)`.
fn launch_shape(
    t: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    dtype: DType,
    max_keys: usize,
    target_blocks: usize,
) -> (usize, usize, usize) {
    let vec = 16 / dtype.size_in_bytes().max(1);
    let gb = group(heads, kv_heads);
    let (n, len) = splits_for(
        t * heads / gb.max(1),
        max_keys,
        max_split(gb, vec, d),
        target_blocks,
    );
    (n, len, shared_bytes(gb, vec, d, len, n))
}

/// Bytes of split scratch [`paged_attention`] allocates for `t` query tokens of `heads`
/// heads (`kv_heads` KV heads, head dim `d`) attending to up to `max_keys` keys; `None` when
/// so many splits do not fit the kernel's shared memory.
pub fn paged_attention_scratch_bytes(
    t: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    dtype: DType,
    max_keys: usize,
) -> Option<usize> {
    let (n, _, shared) = launch_shape(t, heads, kv_heads, d, dtype, max_keys, TARGET_BLOCKS);
    (shared <= SHARED_BYTES).then_some(if n > 1 {
        t * heads * n * (d + 2) * 4
    } else {
        0
    })
}

/// Split counters for [`PagedAttentionArgs::split_counters`]: zeros for forwards of up to
/// `tokens` tokens of `heads` query heads.
pub fn paged_attention_counters(tokens: usize, heads: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::zeros((tokens * heads).max(1), DType::U32, device)?)
}

/// `q`: `[T, heads, d]` against the caches `[slots, kv_heads, d]` -> `[T, heads * d]`.
/// Slots and positions must have been range-checked against the cache and the slot table.
pub fn paged_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    args: &PagedAttentionArgs,
) -> Result<Tensor> {
    paged_attention_tuned(q, k_cache, v_cache, args, TARGET_BLOCKS)
}

/// [`paged_attention`] with the split count aimed at `target_blocks` blocks (the benchmark
/// sweeps it).
pub(super) fn paged_attention_tuned(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    args: &PagedAttentionArgs,
    target_blocks: usize,
) -> Result<Tensor> {
    let dev = cuda_device(q, "paged_attention query")?;
    let (t, heads, d) = q.dims3()?;
    let (_, kvh, cd) = k_cache.dims3()?;
    let vec = 16 / k_cache.dtype().size_in_bytes().max(1);
    let cache_ok = v_cache.dims() == k_cache.dims()
        && v_cache.dtype() == k_cache.dtype()
        && k_cache.is_contiguous()
        && v_cache.is_contiguous()
        && k_cache.layout().start_offset().is_multiple_of(vec)
        && v_cache.layout().start_offset().is_multiple_of(vec);
    if cd != d
        || kvh == 0
        || heads % kvh != 0
        || !cache_ok
        || args.token_seq.dims1()? != t
        || args.token_pos.dims1()? != t
        || args.split_counters.dims1()? < t * heads
        || args.split_counters.dtype() != DType::U32
        || t > 65535
    {
        return Err(ShardError::InvalidArgument(format!(
            "paged_attention shapes q {:?} cache {:?} tokens {:?}",
            q.dims(),
            k_cache.dims(),
            args.token_seq.dims()
        )));
    }
    let dtype = k_cache.dtype();
    let name = suffix(dtype)?;
    if !paged_attention_supported(d, dtype) {
        return Err(ShardError::InvalidArgument(format!(
            "paged_attention: head dim {d} in {dtype:?} is not supported"
        )));
    }
    let gb = group(heads, kvh);
    // One instantiation per group size (1..=MAX_GROUP).
    let func = dev.get_or_load_custom_func(
        &format!("paged_attention_{name}_g{gb}"),
        "paged_attention",
        ptx::PAGED_ATTENTION,
    )?;
    let (splits, split_len, shared) =
        launch_shape(t, heads, kvh, d, dtype, args.max_keys, target_blocks);
    if shared > SHARED_BYTES {
        return Err(ShardError::InvalidArgument(format!(
            "paged_attention: {} keys need {splits} splits, more than shared memory holds",
            args.max_keys
        )));
    }
    let mut q = q.to_dtype(dtype)?.contiguous()?;
    if !q.layout().start_offset().is_multiple_of(vec) {
        // The kernel reads q with 16-byte loads.
        q = q.copy()?;
    }
    with_float_type!(dtype, T, {
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k_cache.storage_and_layout();
        let (vs, vl) = v_cache.storage_and_layout();
        let (ss, sl) = args.token_seq.storage_and_layout();
        let (ps, pl) = args.token_pos.storage_and_layout();
        let (os, ol) = args.seq_off.storage_and_layout();
        let (tbs, tbl) = args.slot_table.storage_and_layout();
        let (cs, cl) = args.split_counters.storage_and_layout();
        let qv = view::<T>(&qs, ql, "q")?;
        let (kv, vv) = (
            view::<T>(&ks, kl, "k_cache")?,
            view::<T>(&vs, vl, "v_cache")?,
        );
        let sv = view::<u32>(&ss, sl, "token_seq")?;
        let pv = view::<u32>(&ps, pl, "token_pos")?;
        let ov = view::<u32>(&os, ol, "seq_off")?;
        let tv = view::<u32>(&tbs, tbl, "slot_table")?;
        let cv = view::<u32>(&cs, cl, "split_counters")?;
        let out = alloc::<T>(&dev, t * heads * d)?;
        let rows = t * heads;
        let part_ml = alloc::<f32>(&dev, if splits > 1 { rows * splits * 2 } else { 1 })?;
        let part_acc = alloc::<f32>(&dev, if splits > 1 { rows * splits * d } else { 1 })?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        b.arg(&qv)
            .arg(&kv)
            .arg(&vv)
            .arg(&sv)
            .arg(&pv)
            .arg(&ov)
            .arg(&tv);
        b.arg(&out).arg(&part_ml).arg(&part_acc).arg(&cv);
        let (window, h_i, kvh_i, d_i, s_i) = (
            args.window as i32,
            heads as i32,
            kvh as i32,
            d as i32,
            splits as i32,
        );
        let len_i = split_len as i32;
        b.arg(args.scale)
            .arg(window)
            .arg(h_i)
            .arg(kvh_i)
            .arg(d_i)
            .arg(s_i)
            .arg(len_i);
        let cfg = LaunchConfig {
            grid_dim: (splits as u32, (heads / gb) as u32, t as u32),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        if t > 0 {
            // SAFETY: shapes checked above, slots and positions checked by the caller.
            unsafe { b.launch(cfg) }?;
        } else {
            drop(b); // nothing to do: release the argument borrows
        }
        Ok(wrap(out, &dev, (t, heads * d)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fill_the_gpu_and_respect_the_bounds() {
        // Batch 1, 8 blocks (32 heads in groups of 4), 150 keys: several splits of >= 32 keys.
        let (n, len) = splits_for(8, 150, MAX_SPLIT, TARGET_BLOCKS);
        assert!(n >= 2 && len >= 32 && n * len >= 150 && (n - 1) * len < 150);
        // Large batches: one split per row unless the range exceeds the maximum.
        assert_eq!(splits_for(8 * 64, 300, MAX_SPLIT, TARGET_BLOCKS), (1, 320));
        let (n, len) = splits_for(8 * 64, 1300, MAX_SPLIT, TARGET_BLOCKS);
        assert!(len <= MAX_SPLIT && n * len >= 1300);
        assert_eq!(splits_for(1, 1, MAX_SPLIT, TARGET_BLOCKS), (1, 32));
    }

    #[test]
    fn groups_divide_the_gqa_ratio_and_fit_shared_memory() {
        assert_eq!(group(32, 8), 4);
        assert_eq!(group(8, 8), 1);
        assert_eq!(group(64, 8), 8);
        assert_eq!(group(32, 1), 8);
        assert_eq!(group(12, 2), 6);
        for (gb, vec, d) in [
            (1, 8, 128),
            (4, 8, 128),
            (8, 8, 128),
            (8, 4, 64),
            (4, 8, 64),
        ] {
            let len = max_split(gb, vec, d);
            let bytes = shared_bytes(gb, vec, d, len, 64);
            assert!(
                bytes <= SHARED_BYTES && len.is_multiple_of(32),
                "{gb} {vec} {d} {len}"
            );
        }
        // Batch 1 at a 128K context: many splits, and their merge weights still fit.
        assert!(paged_attention_scratch_bytes(1, 32, 8, 128, DType::BF16, 131072).is_some());
    }
}
