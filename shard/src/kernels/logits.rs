//! Launcher of `kernels/logits.cu`: per-row argmax, tie count and logprobs of f32 logits.

use super::{alloc, cuda_device, ptx, view, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Tensor};

const THREADS: u32 = 1024;

/// For f32 `logits` `[R, vocab]` and `asked` (`[R]` u32): `[R, 4]` f32 rows of (argmax id,
/// its logprob, the asked id's logprob, entries equal to the maximum). Logprobs are NaN for
/// rows holding a non-finite logit, and for an asked id outside the vocabulary.
pub fn logits_stats(logits: &Tensor, asked: &Tensor) -> Result<Tensor> {
    let dev = cuda_device(logits, "logits_stats logits")?;
    let (rows, vocab) = logits.dims2()?;
    if logits.dtype() != DType::F32 || asked.dtype() != DType::U32 || asked.dims1()? != rows {
        return Err(ShardError::InvalidArgument(format!(
            "logits_stats: logits {:?} {:?}, asked {:?} {:?}",
            logits.dims(),
            logits.dtype(),
            asked.dims(),
            asked.dtype()
        )));
    }
    let func = dev.get_or_load_custom_func("logits_stats_f32", "logits", ptx::LOGITS)?;
    let logits = logits.contiguous()?;
    let asked = asked.contiguous()?;
    let (ls, ll) = logits.storage_and_layout();
    let (as_, al) = asked.storage_and_layout();
    let lv = view::<f32>(&ls, ll, "logits")?;
    let av = view::<u32>(&as_, al, "asked")?;
    let out = alloc::<f32>(&dev, rows * 4)?;
    let vocab_i = vocab as i32;
    let mut b = func.builder();
    b.arg(&lv).arg(&av).arg(&out).arg(&vocab_i);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    if rows > 0 && vocab > 0 {
        // SAFETY: shapes checked above; the kernel range-checks the asked ids.
        unsafe { b.launch(cfg) }.w()?;
    }
    Ok(wrap(out, &dev, (rows, 4)))
}
