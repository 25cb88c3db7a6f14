//! The shard's own CUDA kernels (`shard/kernels/*.cu`, compiled to PTX by `build.rs`) and the
//! launchers that run them on candle tensors. Only built with the `cuda` feature; every
//! launcher has a candle-ops equivalent that the CPU path uses and the tests compare against.

mod attention;
#[cfg(test)]
mod bench;
mod flash_prefill;
mod fused;
mod gemm;
mod launch;
mod logits;
mod skinny_gemm;
mod softmax;
#[cfg(test)]
mod tests;

pub use attention::{
    paged_attention, paged_attention_counters, paged_attention_scratch_bytes,
    paged_attention_supported, PagedAttentionArgs,
};
pub use flash_prefill::{
    flash_prefill, flash_prefill_supported, prefill_tiles, FlashPrefillArgs, FLASH_TILE_ROWS,
};
pub use fused::{add_rms_norm, rope_qkv, silu_mul, write_kv};
pub use gemm::{linear, silu_gated_linear, GEMV_MAX_M};
pub use launch::without_pdl;
pub use logits::logits_stats;
pub use softmax::masked_softmax;

use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, DType, Layout, Shape, Storage, Tensor};

/// PTX of each `kernels/*.cu` file.
mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// A kernel switch from the environment: `1` turns it on, `0` off, anything else (or unset)
/// leaves `default` (switches for kernels whose gain depends on the card or the shapes).
fn env_switch(name: &str, default: bool) -> bool {
    match std::env::var(name).as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => default,
    }
}

/// Kernel-name suffix of a floating dtype the kernels are instantiated for.
fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        other => Err(ShardError::InvalidArgument(format!(
            "the CUDA kernels support f32, f16 and bf16, not {other:?}"
        ))),
    }
}

/// Whether `t`'s data starts on a 16-byte boundary (the kernels' vector loads).
fn aligned(t: &Tensor) -> bool {
    let vec = 16 / t.dtype().size_in_bytes().max(1);
    t.layout().start_offset().is_multiple_of(vec)
}

/// Elements of `dtype` in a 16-byte load when every tensor of `ts` starts on a 16-byte
/// boundary and rows of `width` elements keep them there; `None`: scalar loads only.
fn vector_width(dtype: DType, width: usize, ts: &[&Tensor]) -> Option<usize> {
    let vec = 16 / dtype.size_in_bytes().max(1);
    (width.is_multiple_of(vec) && ts.iter().all(|t| aligned(t))).then_some(vec)
}

/// The CUDA device of `t`, or an error naming `what`.
fn cuda_device(t: &Tensor, what: &str) -> Result<CudaDevice> {
    match t.device() {
        candle_core::Device::Cuda(d) => Ok(d.clone()),
        other => Err(ShardError::InvalidArgument(format!(
            "{what} must be on a CUDA device, found {other:?}"
        ))),
    }
}

/// The memory of a contiguous CUDA tensor, from its storage guard.
fn view<'a, T: CudaDType>(
    storage: &'a Storage,
    layout: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let Storage::Cuda(cs) = storage else {
        return Err(ShardError::InvalidArgument(format!(
            "{what} is not a CUDA tensor"
        )));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(ShardError::InvalidArgument(format!(
            "{what} must be contiguous"
        )));
    };
    Ok(cs.as_cuda_slice::<T>()?.slice(start..end))
}

/// Uninitialised device memory for `n` elements; every element must be written by a kernel.
fn alloc<T: DeviceRepr>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: callers launch a kernel that writes all `n` elements before the tensor is read.
    Ok(unsafe { dev.alloc::<T>(n.max(1))? })
}

/// Wraps kernel output memory as a tensor of `shape`.
fn wrap<T: CudaDType>(slice: CudaSlice<T>, dev: &CudaDevice, shape: impl Into<Shape>) -> Tensor {
    let storage = CudaStorage::wrap_cuda_slice(slice, dev.clone());
    Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
}

/// Runs `$body` with `$t` bound to the Rust type of `$dtype` (f32, f16 or bf16).
macro_rules! with_float_type {
    ($dtype:expr, $t:ident, $body:block) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F16 => {
                type $t = half::f16;
                $body
            }
            candle_core::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            other => Err($crate::error::ShardError::InvalidArgument(format!(
                "the CUDA kernels support f32, f16 and bf16, not {other:?}"
            ))),
        }
    };
}
use with_float_type;
