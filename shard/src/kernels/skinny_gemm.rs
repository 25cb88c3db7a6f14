//! Launcher of the tensor-core skinny GEMM (`kernels/skinny_gemm.cu`): `x[M, K] . W[N, K]^T`
//! for batched decode, 8 < M <= 64, f16/bf16: it streams the weights once straight into
//! tensor-core fragments. On an H100 it beat cuBLAS only on unsplit wide outputs at M <= 32,
//! and decode did not gain from it, so `linear` uses it only when asked ([`skinny_gemm_pays`]).

use super::launch::Launch;
use super::{alloc, ptx, suffix, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig};
use candle_core::cuda_backend::DeviceId;
use candle_core::{CudaDevice, DType, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Smallest and largest M the kernel takes (smaller ones use the GEMV).
pub const SKINNY_M: std::ops::RangeInclusive<usize> = 9..=64;
/// W rows per block and K elements per pipeline chunk (`SG_ROWS`, `SG_KC` in the kernel).
const ROWS: usize = 64;
const CHUNK: usize = 128;
/// Blocks to aim for: three resident per SM on a 132-SM H100 (the kernel's registers allow
/// three), so every SM streams weights until the end.
const TARGET_BLOCKS: usize = 396;
/// Row ranges the split counters cover; wider outputs run unsplit.
const MAX_COUNTERS: usize = 8192;

/// Whether [`skinny_gemm`] can compute these shapes.
pub fn skinny_gemm_supported(m: usize, k: usize, dtype: DType) -> bool {
    SKINNY_M.contains(&m) && k.is_multiple_of(CHUNK) && matches!(dtype, DType::F16 | DType::BF16)
}

/// Largest M at which the kernel beat cuBLAS on an H100 (2026-12-07 kernel bench: gate_up
/// m=32 79.5 vs 86.2 µs, lm_head 355.7 vs 369.9 µs; at m = 48 cuBLAS wins by 25%).
const FASTER_MAX_M: usize = 32;

/// Whether [`skinny_gemm`] is the faster choice for these shapes: wide outputs that fill the
/// GPU without split-K (Llama's gate_up and lm_head) at M <= 32. Split-K outputs lost to
/// cuBLAS at every M measured (o_proj m=32: 20.7 vs 10.5 µs), so cuBLAS keeps those.
/// Opt-in (`CUDA_SKINNY_GEMM=1`): batch-32 decode gained nothing measurable from it
/// (3,787 vs 3,839 tok/s without it, same H100 and call), so cuBLAS stays the default.
pub fn skinny_gemm_pays(m: usize, n: usize, k: usize, dtype: DType) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::env_switch("CUDA_SKINNY_GEMM", false))
        && m <= FASTER_MAX_M
        && skinny_gemm_supported(m, k, dtype)
        && splits(n, k) == 1
}

/// K splits for an output of `n` rows and `k` columns: enough blocks to fill the GPU, each
/// split at least 4 chunks long and a whole number of chunks.
fn splits(n: usize, k: usize) -> usize {
    let row_blocks = n.div_ceil(ROWS);
    let chunks = k / CHUNK;
    let mut s = 1;
    while row_blocks * s < TARGET_BLOCKS
        && row_blocks <= MAX_COUNTERS
        && chunks.is_multiple_of(2 * s)
        && chunks / (2 * s) >= 4
    {
        s *= 2;
    }
    s
}

/// The zeroed per-row-range counters of `dev` (the last block of a range resets its own).
fn counters(dev: &CudaDevice) -> Result<Arc<CudaSlice<u32>>> {
    static COUNTERS: OnceLock<Mutex<HashMap<DeviceId, Arc<CudaSlice<u32>>>>> = OnceLock::new();
    let mut map = COUNTERS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| ShardError::InvalidArgument("skinny GEMM counters poisoned".into()))?;
    if let Some(c) = map.get(&dev.id()) {
        return Ok(c.clone());
    }
    let c = Arc::new(dev.alloc_zeros::<u32>(MAX_COUNTERS)?);
    map.insert(dev.id(), c.clone());
    Ok(c)
}

/// `x` (`[M, K]`, contiguous) times the transpose of `w` (`[N, K]`, contiguous); the caller
/// checked [`skinny_gemm_supported`], matching dtypes and 16-byte alignment.
pub fn skinny_gemm(dev: &CudaDevice, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let n = w.dim(0)?;
    let dtype = w.dtype();
    let tiles = m.div_ceil(8);
    let func = dev.get_or_load_custom_func(
        &format!("skinny_gemm_{}_n{tiles}", suffix(dtype)?),
        "skinny_gemm",
        ptx::SKINNY_GEMM,
    )?;
    let s = splits(n, k);
    let counters = counters(dev)?;
    // One float when unsplit: the kernel does not touch it then.
    let part = alloc::<f32>(dev, if s > 1 { s * m * n } else { 1 })?;
    with_float_type!(dtype, T, {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (xv, wv) = (view::<T>(&xs, xl, "x")?, view::<T>(&ws, wl, "weight")?);
        let out = alloc::<T>(dev, m * n)?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        b.arg(&xv)
            .arg(&wv)
            .arg(&out)
            .arg(&part)
            .arg(counters.as_ref());
        b.arg(m as i32)
            .arg(n as i32)
            .arg(k as i32)
            .arg((k / s) as i32);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(ROWS) as u32, s as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: shapes, dtype and alignment checked by the caller; `part` holds s*m*n floats
        // when s > 1 and the counters cover every row range then (`splits`).
        unsafe { b.launch(cfg) }?;
        Ok(wrap(out, dev, (m, n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fill_the_gpu_in_whole_chunks() {
        // Llama-3-8B linears: qkv, o_proj, gate_up, down, lm_head.
        assert_eq!(splits(6144, 4096), 8);
        assert_eq!(splits(4096, 4096), 8);
        assert_eq!(splits(28672, 4096), 1);
        assert_eq!(splits(4096, 14336), 8);
        assert_eq!(splits(128256, 4096), 1);
        for (n, k) in [(6144, 4096), (4096, 14336), (300, 256), (1000, 4096)] {
            let s = splits(n, k);
            assert!(
                (k / CHUNK).is_multiple_of(s) && k / s >= CHUNK,
                "{n}x{k}: {s}"
            );
        }
    }
}
