//! `y = x @ W^T + b` over dense or quantized weights, with fusing of several weights that share
//! an input (q/k/v, gate/up) into one matmul.

use super::quantized::QuantizedMatmul;
use crate::error::{Result, ShardError};
use crate::weights::LinearWeight;
use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Module, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// A linear layer.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: LinearKind,
    bias: Option<Tensor>,
    out_features: usize,
}

#[derive(Debug, Clone)]
enum LinearKind {
    Dense(Tensor),
    /// Our CPU kernels (SIMD, repacked weights) for the formats they cover.
    CpuQuantized(QuantizedMatmul),
    /// candle's quantized matmul for everything else (and GPUs).
    Quantized(QMatMul),
}

impl Linear {
    /// A layer from its weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: LinearWeight, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, weight) = match weight {
            LinearWeight::Dense(w) => (w.dim(0)?, LinearKind::Dense(w)),
            LinearWeight::Quantized(q) => {
                let out = q.shape().dims()[0];
                let own = q
                    .device()
                    .is_cpu()
                    .then(|| QuantizedMatmul::try_from_qtensor(&q))
                    .flatten();
                match own {
                    Some(m) => (out, LinearKind::CpuQuantized(m)),
                    None => (out, LinearKind::Quantized(QMatMul::from_arc(q)?)),
                }
            }
        };
        Ok(Self {
            weight,
            bias,
            out_features,
        })
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weight of a dense layer without bias (`[out, in]`), for kernels that fuse the
    /// product with what follows it.
    pub fn dense_weight(&self) -> Option<&Tensor> {
        match (&self.weight, &self.bias) {
            (LinearKind::Dense(w), None) => Some(w),
            _ => None,
        }
    }

    /// `x`: `[tokens, in]` -> `[tokens, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            LinearKind::Dense(w) => dense(x, w)?,
            LinearKind::CpuQuantized(q) => q.forward(&x.contiguous()?)?,
            LinearKind::Quantized(q) => q.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Stacks weights along the output dimension so one matmul computes them all.
///
/// Quantized rows are self-contained blocks, so same-typed quantized matrices stack by
/// concatenating their bytes; mixed types fall back to dense.
pub fn concat_rows(parts: Vec<LinearWeight>) -> Result<LinearWeight> {
    if parts.len() == 1 {
        return parts
            .into_iter()
            .next()
            .ok_or_else(|| ShardError::InvalidArgument("no weights".into()));
    }
    let all_quantized_same = match parts.first() {
        Some(LinearWeight::Quantized(first)) => parts.iter().all(|p| match p {
            LinearWeight::Quantized(q) => {
                q.dtype() == first.dtype() && q.shape().dims()[1..] == first.shape().dims()[1..]
            }
            LinearWeight::Dense(_) => false,
        }),
        _ => false,
    };
    if all_quantized_same {
        let mut bytes = Vec::new();
        let mut rows = 0;
        let mut cols = 0;
        let mut dtype = None;
        let mut device = None;
        for p in &parts {
            if let LinearWeight::Quantized(q) = p {
                bytes.extend_from_slice(&q.data()?);
                rows += q.shape().dims()[0];
                cols = q.shape().dims()[1];
                dtype = Some(q.dtype());
                device = Some(q.device());
            }
        }
        if let (Some(dtype), Some(device)) = (dtype, device) {
            let storage = QStorage::from_data(Cow::Owned(bytes), &device, dtype)?;
            return Ok(LinearWeight::Quantized(Arc::new(QTensor::new(
                storage,
                (rows, cols),
            )?)));
        }
    }
    let dense = parts
        .iter()
        .map(|p| match p {
            LinearWeight::Dense(t) => Ok(t.clone()),
            LinearWeight::Quantized(q) => Ok(q.dequantize(&q.device())?),
        })
        .collect::<Result<Vec<_>>>()?;
    let dtype = dense[0].dtype();
    let dense = dense
        .iter()
        .map(|t| t.to_dtype(dtype))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(LinearWeight::Dense(Tensor::cat(&dense, 0)?))
}

/// `x . w^T`: the own CUDA linear (GEMV kernel or plain cuBLAS GEMM) on a GPU, candle's
/// matmul elsewhere.
fn dense(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && x.rank() == 2 && x.dtype() == w.dtype() {
        return crate::kernels::linear(x, w);
    }
    Ok(x.matmul(&w.t()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};

    #[test]
    fn fused_quantized_equals_separate() -> Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (32, 64), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (16, 64), &dev)?;
        let qa = Arc::new(QTensor::quantize(&a, GgmlDType::Q4_1)?);
        let qb = Arc::new(QTensor::quantize(&b, GgmlDType::Q4_1)?);
        let x = Tensor::randn(0f32, 1.0, (3, 64), &dev)?;
        let sep_a = Linear::new(LinearWeight::Quantized(qa.clone()), None)?.forward(&x)?;
        let sep_b = Linear::new(LinearWeight::Quantized(qb.clone()), None)?.forward(&x)?;
        let fused = Linear::new(
            concat_rows(vec![
                LinearWeight::Quantized(qa),
                LinearWeight::Quantized(qb),
            ])?,
            None,
        )?;
        let y = fused.forward(&x)?;
        let diff = (y - Tensor::cat(&[sep_a, sep_b], 1)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "fused differs by {diff}");
        Ok(())
    }
}
