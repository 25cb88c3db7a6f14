//! Mistral: the Llama decoder with sliding-window attention (`sliding_window` tokens, the
//! current one included, as transformers masks it).

use super::config::{Architecture, HfConfig, ModelConfig};
use crate::error::Result;

/// Mistral's reading of `config.json`.
pub fn config(hf: &HfConfig) -> Result<ModelConfig> {
    let mut c = hf.base_config(Architecture::Mistral)?;
    // 0 or absent: attend to everything.
    c.sliding_window = hf.sliding_window.filter(|&w| w > 0);
    Ok(c)
}
