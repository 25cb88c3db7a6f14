//! Llama 1/2/3/3.1 (and Llama-shaped models such as SmolLM): RMSNorm, RoPE (with llama3
//! scaling), GQA attention, SwiGLU MLP. The decoder itself is shared in `decoder.rs`.

use super::config::{HfConfig, ModelConfig};
use crate::error::Result;

/// Llama's reading of `config.json`: everything is in the base fields.
pub fn config(hf: &HfConfig) -> Result<ModelConfig> {
    hf.base_config(super::config::Architecture::Llama)
}
