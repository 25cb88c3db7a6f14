//! Launcher of `kernels/softmax.cu`: scaled, masked softmax of attention scores in one pass.

use super::{alloc, cuda_device, ptx, suffix, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Tensor};

/// `softmax(scores * scale)` over the last dim of `[b, heads, n, keys]` scores, where query
/// `q` of sequence `b` sees only keys `bounds[b * n + q] = [lo, hi]` (`[b * n, 2]` u32, in
/// range); other keys get 0. Same dtype as `scores`.
pub fn masked_softmax(scores: &Tensor, bounds: &Tensor, scale: f32) -> Result<Tensor> {
    let dev = cuda_device(scores, "masked_softmax scores")?;
    let (b, heads, n, keys) = scores.dims4()?;
    if bounds.dims2()? != (b * n, 2) || bounds.dtype() != DType::U32 {
        return Err(ShardError::InvalidArgument(format!(
            "masked_softmax bounds {:?} {:?} for scores {:?}",
            bounds.dims(),
            bounds.dtype(),
            scores.dims()
        )));
    }
    let dtype = scores.dtype();
    let func = dev.get_or_load_custom_func(
        &format!("masked_softmax_{}", suffix(dtype)?),
        "softmax",
        ptx::SOFTMAX,
    )?;
    let scores = scores.contiguous()?;
    with_float_type!(dtype, T, {
        let (ss, sl) = scores.storage_and_layout();
        let (bs, bl) = bounds.storage_and_layout();
        let sv = view::<T>(&ss, sl, "scores")?;
        let bv = view::<u32>(&bs, bl, "bounds")?;
        let rows = b * heads * n;
        let out = alloc::<T>(&dev, rows * keys)?;
        let mut bld = func.builder();
        let (h_i, n_i, k_i) = (heads as i32, n as i32, keys as i32);
        bld.arg(&sv)
            .arg(&out)
            .arg(&bv)
            .arg(&h_i)
            .arg(&n_i)
            .arg(&k_i)
            .arg(&scale);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (if keys >= 1024 { 512 } else { 128 }, 1, 1),
            shared_mem_bytes: 0,
        };
        if rows > 0 {
            // SAFETY: shapes checked above; the caller keeps the bounds inside `keys`.
            unsafe { bld.launch(cfg) }.w()?;
        }
        Ok(wrap(out, &dev, (b, heads, n, keys)))
    })
}
