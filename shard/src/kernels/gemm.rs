//! Dense linear layers on CUDA: `x[M, K] . W[N, K]^T`. Decode-sized inputs (M <= 8) use the
//! own bandwidth-bound kernel of `kernels/gemv.cu` (also with a SwiGLU MLP's activation fused
//! into its gate/up projection); larger ones call cuBLAS' plain GEMM
//! (candle's matmul goes through the strided-batched entry point, whose kernel choice for
//! skinny shapes was slower in our measurements), or with `CUDA_SKINNY_GEMM=1` the
//! tensor-core skinny GEMM on the shapes where it beat cuBLAS ([`skinny_gemm_pays`]).

use super::launch::Launch;
use super::skinny_gemm::{skinny_gemm, skinny_gemm_pays};
use super::{aligned, alloc, cuda_device, ptx, suffix, vector_width, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys};
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig};
use candle_core::{CudaDevice, DType, Tensor};
use std::sync::OnceLock;

/// Largest M the bandwidth-bound GEMV kernel handles.
pub const GEMV_MAX_M: usize = 8;
const GEMV_THREADS: u32 = 256;

/// `x` (`[M, K]`) times the transpose of `w` (`[N, K]`, contiguous): `[M, N]`.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dev = cuda_device(x, "linear input")?;
    let (m, k) = x.dims2()?;
    let (n, wk) = w.dims2()?;
    let dtype = w.dtype();
    if wk != k || x.dtype() != dtype {
        return Err(ShardError::InvalidArgument(format!(
            "linear: input {:?} {:?} against weight {:?} {:?}",
            x.dims(),
            x.dtype(),
            w.dims(),
            dtype
        )));
    }
    let x = x.contiguous()?;
    if m == 0 {
        return Ok(Tensor::zeros((0, n), dtype, x.device())?);
    }
    if gemv_applies(&x, w) {
        return gemv(&dev, &x, w, "gemv", n);
    }
    if !w.is_contiguous() {
        return Ok(x.matmul(&w.t()?)?);
    }
    if skinny_gemm_pays(m, n, k, dtype) && aligned(&x) && aligned(w) {
        return skinny_gemm(&dev, &x, w);
    }
    cublas_linear(&x, w)
}

/// `silu(x . Wg^T) * (x . Wu^T)` for a stacked gate/up weight `w = [Wg; Wu]` (`[2n, K]`):
/// `[M, n]` from one GEMV, or `None` where the GEMV does not apply (M > 8, operands unaligned
/// or not contiguous, or `CUDA_GATED_GEMV=0`) and the caller multiplies and activates apart.
pub fn silu_gated_linear(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    static ON: OnceLock<bool> = OnceLock::new();
    let dev = cuda_device(x, "gated linear input")?;
    let (two_n, k) = w.dims2()?;
    let on = *ON.get_or_init(|| super::env_switch("CUDA_GATED_GEMV", true));
    if !on || !two_n.is_multiple_of(2) || x.dim(1)? != k {
        return Ok(None);
    }
    let x = x.contiguous()?;
    if !gemv_applies(&x, w) {
        return Ok(None);
    }
    gemv(&dev, &x, w, "gemv_silu_gated", two_n / 2).map(Some)
}

/// Whether `x` (`[M, K]`, contiguous) and `w` suit the GEMV kernels: 1 <= M <= 8, one dtype,
/// K whole 16-byte vectors, both starting on a 16-byte boundary, `w` contiguous.
fn gemv_applies(x: &Tensor, w: &Tensor) -> bool {
    let (m, k) = x.dims2().unwrap_or((0, 0));
    (1..=GEMV_MAX_M).contains(&m)
        && x.dtype() == w.dtype()
        && w.is_contiguous()
        && vector_width(w.dtype(), k, &[x, w]).is_some()
}

/// Launches GEMV kernel `base` (`gemv` or `gemv_silu_gated`) for `x` (`[M, K]`, contiguous)
/// and `w` with `n` outputs per row (checked by [`gemv_applies`]).
fn gemv(dev: &CudaDevice, x: &Tensor, w: &Tensor, base: &str, n: usize) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let dtype = w.dtype();
    let func = dev.get_or_load_custom_func(
        &format!("{base}_{}_m{m}", suffix(dtype)?),
        "gemv",
        ptx::GEMV,
    )?;
    with_float_type!(dtype, T, {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (xv, wv) = (view::<T>(&xs, xl, "x")?, view::<T>(&ws, wl, "weight")?);
        let out = alloc::<T>(dev, m * n)?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        let prefetch = i32::from(b.pdl());
        b.arg(&xv)
            .arg(&wv)
            .arg(&out)
            .arg(n as i32)
            .arg(k as i32)
            .arg(prefetch);
        let warps = (GEMV_THREADS / 32) as usize;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(warps) as u32, 1, 1),
            block_dim: (GEMV_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: shapes and 16-byte alignment checked by `gemv_applies`; `w` holds `n` rows
        // (twice that for the gated kernel) of K; the kernel waits (PDL) before it reads x.
        unsafe { b.launch(cfg) }?;
        Ok(wrap(out, dev, (m, n)))
    })
}

/// [`linear`] through cuBLAS (`w` contiguous), whatever the shape.
pub(super) fn cublas_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dev = cuda_device(x, "linear input")?;
    let (m, k) = x.dims2()?;
    let n = w.dim(0)?;
    let dtype = w.dtype();
    let x = x.contiguous()?;
    let data_type = match dtype {
        DType::BF16 => blas_sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => blas_sys::cudaDataType_t::CUDA_R_16F,
        DType::F32 => blas_sys::cudaDataType_t::CUDA_R_32F,
        other => {
            return Err(ShardError::InvalidArgument(format!(
                "linear: unsupported dtype {other:?}"
            )))
        }
    };
    with_float_type!(dtype, T, {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (xv, wv) = (view::<T>(&xs, xl, "x")?, view::<T>(&ws, wl, "weight")?);
        let out = alloc::<T>(&dev, m * n)?;
        let stream = dev.cuda_stream();
        let (xp, _gx) = xv.device_ptr(&stream);
        let (wp, _gw) = wv.device_ptr(&stream);
        let (op, go) = out.device_ptr(&stream);
        let (alpha, beta) = (1f32, 0f32);
        let blas_handle = dev.cublas_handle();
        // Column-major view: y^T [N, M] = W [N, K] (row-major, so op T) . x^T [K, M].
        // SAFETY: pointers come from live views of the checked shapes; fp32 compute type takes
        // f32 alpha/beta.
        unsafe {
            blas::gemm_ex(
                *blas_handle.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                m as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                wp as *const _,
                data_type,
                k as i32,
                xp as *const _,
                data_type,
                k as i32,
                (&beta as *const f32).cast(),
                op as *mut _,
                data_type,
                n as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
            )
        }
        .map_err(|e| ShardError::InvalidArgument(format!("cuBLAS GEMM {m}x{n}x{k}: {e:?}")))?;
        drop(go);
        Ok(wrap(out, &dev, (m, n)))
    })
}
