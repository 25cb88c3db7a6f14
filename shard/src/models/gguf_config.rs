//! Model hyper-parameters from GGUF metadata (llama.cpp's `llama` and `qwen2` architectures).

use super::config::{Architecture, ModelConfig};
use crate::error::{Result, ShardError};
use crate::weights::gguf::GgufWeights;
use crate::weights::WeightSource;

/// Reads `{arch}.*` keys; vocabulary from the embedding's shape.
pub fn config_from_gguf(w: &GgufWeights) -> Result<ModelConfig> {
    let arch_name = w
        .metadata("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| ShardError::InvalidConfig("GGUF has no general.architecture".into()))?;
    let (architecture, interleaved) = match arch_name.as_str() {
        // llama.cpp permutes llama q/k rows for interleaved (GPT-J) rotary; qwen2 uses NeoX.
        "llama" => (Architecture::Llama, true),
        "qwen2" => (Architecture::Qwen2, false),
        other => {
            return Err(ShardError::UnsupportedArchitecture {
                name: format!("GGUF architecture `{other}`"),
                supported: "GGUF architectures llama, qwen2",
            })
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let get_u = |k: &str| -> Result<usize> {
        w.metadata(&key(k))
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .map(|v| v as usize)
            .ok_or_else(|| {
                ShardError::InvalidConfig(format!(
                    "GGUF metadata `{}` missing or not an integer",
                    key(k)
                ))
            })
    };
    let get_f = |k: &str| w.metadata(&key(k)).and_then(|v| v.to_f32().ok());
    let hidden = get_u("embedding_length")?;
    let heads = get_u("attention.head_count")?;
    let kv_heads = get_u("attention.head_count_kv").unwrap_or(heads);
    let head_dim = get_u("rope.dimension_count").unwrap_or(hidden / heads.max(1));
    let vocab = w
        .shape("model.embed_tokens.weight")?
        .first()
        .copied()
        .ok_or_else(|| ShardError::InvalidConfig("token_embd.weight has no rows".into()))?;
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(ShardError::InvalidConfig(format!(
            "GGUF head counts {heads}/{kv_heads} are not a valid GQA layout"
        )));
    }
    Ok(ModelConfig {
        architecture,
        hidden_size: hidden,
        intermediate_size: get_u("feed_forward_length")?,
        num_layers: get_u("block_count")?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        vocab_size: vocab,
        rms_norm_eps: get_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
        rope_theta: get_f("rope.freq_base").unwrap_or(10000.0),
        rope_scaling: None,
        rope_interleaved: interleaved,
        max_position_embeddings: get_u("context_length").unwrap_or(4096),
        sliding_window: None,
        qkv_bias: w.contains("model.layers.0.self_attn.q_proj.bias"),
        tie_word_embeddings: !w.contains("lm_head.weight"),
    })
}
