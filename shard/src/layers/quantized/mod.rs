//! Our CPU matmul over GGUF block-quantized weights (Q4_0, Q4_1, Q8_0): weights repacked at
//! load time, activations quantized to 8 bits once per call, AVX2 / VNNI kernels picked at
//! runtime, one parallel loop per matmul led by the calling thread.
//!
//! candle's `QMatMul` covers Q4_1 with a scalar dot product only; this module exists for the
//! default model's Q4_1 weights and its Q8_0 tied embedding / lm_head.

mod activation;
#[cfg(target_arch = "x86_64")]
mod kernels_x86;
mod matmul;
mod packed;
mod parallel;
mod scalar;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use activation::QuantizedActivations;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Storage, Tensor};
use matmul::GroupsKernel;
use packed::{Format, PackedWeights};
use std::sync::Arc;

/// The instruction set a [`QuantizedMatmul`] runs its kernels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable Rust, no SIMD intrinsics (the reference).
    Scalar,
    /// AVX2 + FMA + F16C (x86-64-v3).
    Avx2,
    /// AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded).
    AvxVnni,
    /// AVX-512 VNNI + VL (`vpdpbusd` on 256-bit vectors, EVEX-encoded).
    Avx512Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn best() -> Self {
        [Self::Avx512Vnni, Self::AvxVnni, Self::Avx2]
            .into_iter()
            .find(|k| k.is_supported())
            .unwrap_or(Self::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let v3 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            match self {
                Self::Scalar => true,
                Self::Avx2 => v3,
                Self::AvxVnni => v3 && is_x86_feature_detected!("avxvnni"),
                Self::Avx512Vnni => {
                    v3 && is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512vl")
                        && is_x86_feature_detected!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Scalar
        }
    }

    /// The group kernel for a weight format; only called for supported kernels.
    fn groups_kernel(self, format: Format) -> GroupsKernel {
        #[cfg(target_arch = "x86_64")]
        {
            use kernels_x86::{avx2, avx512vnni, avxvnni};
            match (self, format) {
                (Self::Scalar, _) => scalar::matmul_groups,
                (Self::Avx2, Format::Q4) => avx2::q4,
                (Self::Avx2, Format::Q8) => avx2::q8,
                (Self::AvxVnni, Format::Q4) => avxvnni::q4,
                (Self::AvxVnni, Format::Q8) => avxvnni::q8,
                (Self::Avx512Vnni, Format::Q4) => avx512vnni::q4,
                (Self::Avx512Vnni, Format::Q8) => avx512vnni::q8,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = format;
            scalar::matmul_groups
        }
    }
}

/// `y = x W^T` for a GGUF Q4_0 / Q4_1 / Q8_0 weight `W: [out, in]` on the CPU.
///
/// Cheap to clone: the repacked weights are shared.
#[derive(Debug, Clone)]
pub struct QuantizedMatmul {
    weights: Arc<PackedWeights>,
    kernel: Kernel,
}

impl QuantizedMatmul {
    /// Repacks a 2-D CPU `QTensor` `[out, in]` of dtype Q4_0, Q4_1 or Q8_0, using the best
    /// kernel for this CPU; `None` for anything else, so the caller can keep candle's
    /// `QMatMul`.
    pub fn try_from_qtensor(q: &QTensor) -> Option<Self> {
        let &[rows, cols] = q.shape().dims() else {
            return None;
        };
        if !q.device().is_cpu() {
            return None;
        }
        let bytes = q.data().ok()?;
        let weights = PackedWeights::from_gguf(q.dtype(), rows, cols, &bytes)?;
        Some(Self {
            weights: Arc::new(weights),
            kernel: Kernel::best(),
        })
    }

    /// The same weights run with `kernel`; `None` if this CPU cannot run it.
    pub fn with_kernel(self, kernel: Kernel) -> Option<Self> {
        kernel.is_supported().then_some(Self { kernel, ..self })
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Input features (`in`).
    pub fn in_features(&self) -> usize {
        self.weights.cols()
    }

    /// Output features (`out`).
    pub fn out_features(&self) -> usize {
        self.weights.rows()
    }

    /// `x: [..., in]` on the CPU -> `[..., out]`, in `x`'s dtype (computed in f32).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let cols = self.in_features();
        if dims.last() != Some(&cols) {
            candle_core::bail!(
                "quantized matmul: input shape {:?} does not end in {cols}",
                x.shape()
            );
        }
        if !x.device().is_cpu() {
            candle_core::bail!(
                "quantized matmul: input on {:?}, expected the CPU",
                x.device().location()
            );
        }
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let act = {
            let (storage, layout) = xf.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("quantized matmul: input is not in CPU memory");
            };
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("quantized matmul: input is not contiguous");
            };
            QuantizedActivations::quantize(
                &cpu.as_slice::<f32>()?[start..end],
                cols,
                self.kernel != Kernel::Scalar,
            )
        };
        let kernel = self.kernel.groups_kernel(self.weights.format());
        // SAFETY: `self.kernel` was checked to be supported (`best` / `with_kernel`).
        let y = unsafe { matmul::run(kernel, &self.weights, &act) };
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_features();
        }
        Tensor::from_vec(y, out_dims, &Device::Cpu)?.to_dtype(x.dtype())
    }
}
