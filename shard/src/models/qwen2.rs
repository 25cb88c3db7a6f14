//! Qwen2 / Qwen2.5: the Llama decoder with bias on the q/k/v projections; the sliding window
//! applies only when `use_sliding_window` is true.

use super::config::{Architecture, HfConfig, ModelConfig};
use crate::error::Result;

/// Qwen2's reading of `config.json`.
pub fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let mut c = hf.base_config(Architecture::Qwen2)?;
    c.qkv_bias = true;
    c.sliding_window = if hf.use_sliding_window.unwrap_or(false) {
        hf.sliding_window.filter(|&w| w > 0)
    } else {
        None
    };
    Ok(c)
}
