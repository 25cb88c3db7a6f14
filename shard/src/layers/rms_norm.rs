//! RMSNorm: `x / sqrt(mean(x²) + eps) * weight`, candle's fused kernel.

use crate::error::Result;
use crate::parallel::Split;
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};

/// RMSNorm with a learned scale (replicated on every rank).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads `name` (shape `[size]`).
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        size: usize,
        eps: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        crate::weights::expect_shape(src, name, &[size])?;
        Ok(Self {
            weight: src.tensor(name, Split::Full, dtype, device)?,
            eps: eps as f32,
        })
    }

    /// Normalises the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }

    /// `(x + h, norm(x + h))`: the residual add and the next norm, fused into one kernel on
    /// CUDA (`[T, hidden]` inputs in the weight's dtype).
    pub fn forward_residual(&self, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda()
            && x.rank() == 2
            && x.dtype() == self.weight.dtype()
            && h.dtype() == x.dtype()
            && x.is_contiguous()
            && h.is_contiguous()
        {
            return crate::kernels::add_rms_norm(x, h, &self.weight, self.eps);
        }
        let sum = (x + h)?;
        let norm = self.forward(&sum)?;
        Ok((sum, norm))
    }
}
