//! Launcher of `kernels/flash_prefill.cu`: causal attention of prompt chunks on tensor cores,
//! reading K/V through each sequence's slot table, and the host-side cut of a forward's
//! tokens into the kernel's query tiles.

use super::{alloc, cuda_device, ptx, suffix, view, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Tensor};

/// Query rows per tile (`FP_ROWS`).
pub const FLASH_TILE_ROWS: usize = 64;
const THREADS: u32 = 128;
/// Key positions per shared-memory tile (`FP_KEYS`).
const TILE_KEYS: usize = 32;

/// Whether the kernel handles heads of `head_dim` in `dtype` (tensor cores take 16-bit
/// inputs; the kernel is instantiated for these head sizes).
pub fn flash_prefill_supported(head_dim: usize, dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16) && matches!(head_dim, 64 | 128)
}

/// Shared memory of one block, as laid out in the kernel's `FlashShape`.
fn shared_bytes(head_dim: usize) -> usize {
    let kv = 4 * TILE_KEYS * (head_dim + 8) * 2;
    let scores = 4 * 16 * (TILE_KEYS + 4) * 4;
    kv + scores + 4 * 16 * 4
}

/// One forward's query tiles, `[first token, rows, sequence, first position]` each: runs of
/// at most [`FLASH_TILE_ROWS`] consecutive tokens of one sequence at consecutive positions,
/// covering every token once, the ones with the most keys first so that the longest blocks
/// start earliest.
pub fn prefill_tiles(token_seq: &[u32], token_pos: &[u32], window: usize) -> Vec<[u32; 4]> {
    let mut tiles: Vec<[u32; 4]> = Vec::new();
    for (t, (&s, &p)) in token_seq.iter().zip(token_pos).enumerate() {
        match tiles.last_mut() {
            Some(tile)
                if tile[2] == s
                    && tile[3] + tile[1] == p
                    && (tile[1] as usize) < FLASH_TILE_ROWS =>
            {
                tile[1] += 1
            }
            _ => tiles.push([t as u32, 1, s, p]),
        }
    }
    let keys = |t: &[u32; 4]| {
        let last = (t[3] + t[1]) as usize;
        let first = if window > 0 {
            (t[3] as usize + 1).saturating_sub(window)
        } else {
            0
        };
        last - first
    };
    tiles.sort_by_key(|t| std::cmp::Reverse(keys(t)));
    tiles
}

/// Per-forward inputs of [`flash_prefill`], uploaded once and shared by every layer.
#[derive(Debug)]
pub struct FlashPrefillArgs {
    /// `[tiles * 4]` u32 from [`prefill_tiles`].
    pub tiles: Tensor,
    /// `[seqs]` u32: where each sequence's slots start in `slot_table`.
    pub seq_off: Tensor,
    /// u32 slots of every position of every sequence, concatenated.
    pub slot_table: Tensor,
    /// Attend to the last `window` positions only (0: all).
    pub window: usize,
    /// Softmax scale.
    pub scale: f32,
}

/// `q`: `[T, heads, d]` against the caches `[slots, kv_heads, d]` -> `[T, heads * d]`, for
/// tokens cut into `args.tiles`, in the cache's dtype. Slots and positions must have been
/// range-checked against the cache and the slot table.
pub fn flash_prefill(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    args: &FlashPrefillArgs,
) -> Result<Tensor> {
    let dev = cuda_device(q, "flash_prefill query")?;
    let (t, heads, d) = q.dims3()?;
    let (_, kvh, cd) = k_cache.dims3()?;
    let dtype = k_cache.dtype();
    let n_tiles = args.tiles.dims1()? / 4;
    let cache_ok = v_cache.dims() == k_cache.dims()
        && v_cache.dtype() == dtype
        && k_cache.is_contiguous()
        && v_cache.is_contiguous()
        && k_cache.layout().start_offset().is_multiple_of(8)
        && v_cache.layout().start_offset().is_multiple_of(8);
    if cd != d
        || kvh == 0
        || heads % kvh != 0
        || !cache_ok
        || !flash_prefill_supported(d, dtype)
        || n_tiles > 65535
    {
        return Err(ShardError::InvalidArgument(format!(
            "flash_prefill: q {:?}, cache {:?} {dtype:?}, {n_tiles} tiles",
            q.dims(),
            k_cache.dims()
        )));
    }
    let mut q = q.to_dtype(dtype)?.contiguous()?;
    if !q.layout().start_offset().is_multiple_of(8) {
        // The kernel reads q with 16-byte loads.
        q = q.copy()?;
    }
    let func = dev.get_or_load_custom_func(
        &format!("flash_prefill_{}_d{d}", suffix(dtype)?),
        "flash_prefill",
        ptx::FLASH_PREFILL,
    )?;
    macro_rules! launch {
        ($t:ty) => {{
            let (qs, ql) = q.storage_and_layout();
            let (ks, kl) = k_cache.storage_and_layout();
            let (vs, vl) = v_cache.storage_and_layout();
            let (ts, tl) = args.tiles.storage_and_layout();
            let (os, ol) = args.seq_off.storage_and_layout();
            let (tbs, tbl) = args.slot_table.storage_and_layout();
            let qv = view::<$t>(&qs, ql, "q")?;
            let kv = view::<$t>(&ks, kl, "k_cache")?;
            let vv = view::<$t>(&vs, vl, "v_cache")?;
            let tv = view::<u32>(&ts, tl, "tiles")?;
            let ov = view::<u32>(&os, ol, "seq_off")?;
            let sv = view::<u32>(&tbs, tbl, "slot_table")?;
            let out = alloc::<$t>(&dev, t * heads * d)?;
            let scale_log2 = args.scale * std::f32::consts::LOG2_E;
            let (window, h_i, kvh_i) = (args.window as i32, heads as i32, kvh as i32);
            let mut b = func.builder();
            b.arg(&qv)
                .arg(&kv)
                .arg(&vv)
                .arg(&tv)
                .arg(&ov)
                .arg(&sv)
                .arg(&out);
            b.arg(&scale_log2).arg(&window).arg(&h_i).arg(&kvh_i);
            let cfg = LaunchConfig {
                grid_dim: (heads as u32, n_tiles as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: shared_bytes(d) as u32,
            };
            if n_tiles > 0 {
                // SAFETY: shapes checked above; the tiles cover every token once and the
                // caller range-checked slots and positions.
                unsafe { b.launch(cfg) }.w()?;
            }
            Ok(wrap(out, &dev, (t, heads * d)))
        }};
    }
    match dtype {
        DType::F16 => launch!(half::f16),
        _ => launch!(half::bf16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_token_once_in_runs_of_one_sequence() {
        // Sequence 0: 70 prompt tokens from position 10; sequence 1: one decode token at 500;
        // sequence 2: 3 tokens at 0..3.
        let mut seq = vec![0u32; 70];
        let mut pos: Vec<u32> = (10..80).collect();
        seq.push(1);
        pos.push(500);
        seq.extend([2, 2, 2]);
        pos.extend([0, 1, 2]);
        let tiles = prefill_tiles(&seq, &pos, 0);
        let mut covered = vec![0; seq.len()];
        for &[t0, n, s, p0] in &tiles {
            assert!(n as usize <= FLASH_TILE_ROWS);
            for i in 0..n {
                let t = (t0 + i) as usize;
                covered[t] += 1;
                assert_eq!((seq[t], pos[t]), (s, p0 + i));
            }
        }
        assert!(covered.iter().all(|&c| c == 1));
        // Longest key range first: the decode token (501 keys), then sequence 0's tail (80).
        assert_eq!(tiles[0], [70, 1, 1, 500]);
        assert_eq!(tiles[1], [64, 6, 0, 74]);
        assert_eq!(tiles.len(), 4);
        // With a 16-key window every tile of 2+ rows outweighs the decode token's 16 keys.
        assert_eq!(prefill_tiles(&seq, &pos, 16)[0], [0, 64, 0, 10]);
    }

    #[test]
    fn shared_memory_fits_without_an_opt_in() {
        assert!(shared_bytes(128) <= 48 * 1024);
        assert_eq!(shared_bytes(128), 34_816 + 9_216 + 256);
    }
}
