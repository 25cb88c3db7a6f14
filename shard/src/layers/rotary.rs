//! Rotary position embeddings: cos/sin tables (with llama3 / linear scaling) and their
//! application to per-token positions of a ragged batch.

use crate::error::Result;
use crate::models::config::{ModelConfig, RopeScaling};
use candle_core::{DType, Device, Tensor};

/// Precomputed cos/sin for every position up to the model's maximum.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
    max_positions: usize,
}

/// Inverse frequencies as transformers computes them (f32), scaling included.
pub fn inverse_frequencies(cfg: &ModelConfig) -> Vec<f32> {
    let dim = cfg.head_dim;
    let base = cfg.rope_theta;
    let inv: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0f32 / base.powf(i as f32 / dim as f32))
        .collect();
    match cfg.rope_scaling {
        None => inv,
        Some(RopeScaling::Linear { factor }) => inv.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let old = original_max_position_embeddings as f32;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            inv.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl RotaryEmbedding {
    /// Tables for `cfg` in `dtype` on `device`.
    pub fn new(cfg: &ModelConfig, dtype: DType, device: &Device) -> Result<Self> {
        let inv = inverse_frequencies(cfg);
        let half = inv.len();
        let n = cfg.max_position_embeddings.max(1);
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (n, half), device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (n, half), device)?.to_dtype(dtype)?,
            interleaved: cfg.rope_interleaved,
            max_positions: n,
        })
    }

    /// Longest position + 1 the tables cover.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The tables for `positions` (`[T]` u32) of one forward.
    pub fn select(&self, positions: &Tensor) -> Result<Rope> {
        let t = positions.dim(0)?;
        let half = self.cos.dim(1)?;
        Ok(Rope {
            cos: self.cos.index_select(positions, 0)?.reshape((t, 1, half))?,
            sin: self.sin.index_select(positions, 0)?.reshape((t, 1, half))?,
            interleaved: self.interleaved,
        })
    }
}

/// Rotary tables selected for the tokens of one forward, shared by every layer.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[T, 1, head_dim / 2]` cosines at each token's position.
    pub cos: Tensor,
    /// `[T, 1, head_dim / 2]` sines at each token's position.
    pub sin: Tensor,
    /// GPT-J style pairs `(2i, 2i+1)` instead of NeoX halves `(i, i + d/2)`.
    pub interleaved: bool,
}

impl Rope {
    /// Rotates `x`: `[T, heads, head_dim]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (t, h, d) = x.dims3()?;
        // Each token is its own "batch" of one position, so ragged batches need no padding.
        let x = x.contiguous()?.reshape((t, h, 1, d))?;
        let y = if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &self.cos, &self.sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, &self.cos, &self.sin)?
        };
        Ok(y.reshape((t, h, d))?)
    }
}
