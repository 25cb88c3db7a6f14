//! Where weights come from: memory-mapped safetensors directories and GGUF files, behind one
//! [`WeightSource`] trait that hands out (optionally sliced) tensors by their HF name.

pub mod gguf;
pub mod quantize;
pub use text_generation_gguf_tokenizer as gguf_tokenizer;
pub mod safetensors;
pub mod tokenizer;

use crate::error::Result;
use crate::parallel::Split;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// A linear layer's weight as stored: dense or block-quantized.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// `[out, in]` dense matrix in the model dtype.
    Dense(Tensor),
    /// `[out, in]` quantized matrix (GGUF, or quantized at load), multiplied by a quantized
    /// matmul.
    Quantized(Arc<QTensor>),
}

/// A store of named tensors. Names are HF transformers names (`model.layers.0.mlp.up_proj.weight`).
pub trait WeightSource: Send + Sync {
    /// Human-readable origin, for error messages.
    fn describe(&self) -> String;
    /// Whether `name` exists.
    fn contains(&self, name: &str) -> bool;
    /// The full shape of `name` as stored.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// `name` as a dense tensor in `dtype` on `device`, this rank's `split` of it only.
    fn tensor(&self, name: &str, split: Split, dtype: DType, device: &Device) -> Result<Tensor>;
    /// `name` as a linear weight: quantized where the source stores it quantized.
    fn linear(
        &self,
        name: &str,
        split: Split,
        dtype: DType,
        device: &Device,
    ) -> Result<LinearWeight> {
        Ok(LinearWeight::Dense(
            self.tensor(name, split, dtype, device)?,
        ))
    }
}

/// Checks that `name` has `expected` shape in `source`.
pub fn expect_shape(source: &dyn WeightSource, name: &str, expected: &[usize]) -> Result<()> {
    let found = source.shape(name)?;
    if found != expected {
        return Err(crate::error::ShardError::BadShape {
            name: name.to_string(),
            expected: expected.to_vec(),
            found,
        });
    }
    Ok(())
}
