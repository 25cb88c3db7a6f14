//! Launcher of `kernels/paged_attention.cu`: attention of new tokens through each sequence's
//! slot table, split over the sequence for long contexts.

use super::{alloc, cuda_device, ptx, suffix, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::Tensor;

/// Key positions one block handles (`PA_SPLIT` in the kernel).
pub const SPLIT: usize = 512;
const THREADS: u32 = 128;

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
    /// Key splits of the longest range a query attends to: `ceil(keys / SPLIT)`.
    pub num_splits: usize,
    /// Attend to the last `window` positions only (0: all).
    pub window: usize,
    /// Softmax scale.
    pub scale: f32,
}

/// `q`: `[T, heads, d]` against the caches `[slots, kv_heads, d]` -> `[T, heads * d]`.
/// Slots and positions must have been range-checked against the cache and the slot table.
pub fn paged_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    args: &PagedAttentionArgs,
) -> Result<Tensor> {
    let dev = cuda_device(q, "paged_attention query")?;
    let (t, heads, d) = q.dims3()?;
    let (_, kvh, cd) = k_cache.dims3()?;
    if cd != d || kvh == 0 || heads % kvh != 0 || args.token_seq.dims1()? != t {
        return Err(ShardError::InvalidArgument(format!(
            "paged_attention shapes q {:?} cache {:?} tokens {:?}",
            q.dims(),
            k_cache.dims(),
            args.token_seq.dims()
        )));
    }
    let dtype = k_cache.dtype();
    let name = suffix(dtype)?;
    let func = dev.get_or_load_custom_func(
        &format!("paged_attention_{name}"),
        "paged_attention",
        ptx::PAGED_ATTENTION,
    )?;
    let splits = args.num_splits.max(1);
    let q = q.to_dtype(dtype)?.contiguous()?;
    with_float_type!(dtype, T, {
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k_cache.storage_and_layout();
        let (vs, vl) = v_cache.storage_and_layout();
        let (ss, sl) = args.token_seq.storage_and_layout();
        let (ps, pl) = args.token_pos.storage_and_layout();
        let (os, ol) = args.seq_off.storage_and_layout();
        let (tbs, tbl) = args.slot_table.storage_and_layout();
        let qv = view::<T>(&qs, ql, "q")?;
        let (kv, vv) = (
            view::<T>(&ks, kl, "k_cache")?,
            view::<T>(&vs, vl, "v_cache")?,
        );
        let sv = view::<u32>(&ss, sl, "token_seq")?;
        let pv = view::<u32>(&ps, pl, "token_pos")?;
        let ov = view::<u32>(&os, ol, "seq_off")?;
        let tv = view::<u32>(&tbs, tbl, "slot_table")?;
        let out = alloc::<T>(&dev, t * heads * d)?;
        let rows = t * heads;
        let part_ml = alloc::<f32>(&dev, if splits > 1 { rows * splits * 2 } else { 1 })?;
        let part_acc = alloc::<f32>(&dev, if splits > 1 { rows * splits * d } else { 1 })?;
        let mut b = func.builder();
        b.arg(&qv)
            .arg(&kv)
            .arg(&vv)
            .arg(&sv)
            .arg(&pv)
            .arg(&ov)
            .arg(&tv);
        b.arg(&out).arg(&part_ml).arg(&part_acc);
        let (window, h_i, kvh_i, d_i, s_i) = (
            args.window as i32,
            heads as i32,
            kvh as i32,
            d as i32,
            splits as i32,
        );
        b.arg(&args.scale)
            .arg(&window)
            .arg(&h_i)
            .arg(&kvh_i)
            .arg(&d_i)
            .arg(&s_i);
        let cfg = LaunchConfig {
            grid_dim: (splits as u32, heads as u32, t as u32),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: ((d + SPLIT) * 4 + SPLIT * 4) as u32,
        };
        if t > 0 {
            // SAFETY: shapes checked above, slots and positions checked by the caller.
            unsafe { b.launch(cfg) }.w()?;
        }
        if splits > 1 && t > 0 {
            let reduce = dev.get_or_load_custom_func(
                &format!("paged_attention_reduce_{name}"),
                "paged_attention",
                ptx::PAGED_ATTENTION,
            )?;
            let mut b = reduce.builder();
            b.arg(&part_ml).arg(&part_acc).arg(&out).arg(&s_i).arg(&d_i);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the partial buffers were sized for `rows * splits` above.
            unsafe { b.launch(cfg) }.w()?;
        }
        Ok(wrap(out, &dev, (t, heads * d)))
    })
}
