//! The model hyper-parameters the decoder needs, read from HF `config.json` or GGUF metadata.

use crate::error::{Result, ShardError};
use serde::Deserialize;

/// Supported architectures (one file each under `models/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1/2/3/3.1 (and SmolLM, which is Llama-shaped).
    Llama,
    /// Mistral (sliding-window attention).
    Mistral,
    /// Qwen2 / Qwen2.5 (bias on q/k/v).
    Qwen2,
}

impl Architecture {
    /// Names accepted in `architectures` / `model_type`, for error messages.
    pub const SUPPORTED: &'static str =
        "LlamaForCausalLM (llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2)";

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's piecewise scaling of the inverse frequencies.
    Llama3 {
        /// Overall factor.
        factor: f32,
        /// Low-frequency factor.
        low_freq_factor: f32,
        /// High-frequency factor.
        high_freq_factor: f32,
        /// Context length the model was trained with.
        original_max_position_embeddings: usize,
    },
    /// Positions divided by `factor`.
    Linear {
        /// Divisor.
        factor: f32,
    },
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which architecture.
    pub architecture: Architecture,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP intermediate size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Key/value heads (GQA).
    pub num_kv_heads: usize,
    /// Per-head dimension.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// GGUF weights are permuted for interleaved (GPT-J style) rotary; HF weights are not.
    pub rope_interleaved: bool,
    /// Longest supported sequence.
    pub max_position_embeddings: usize,
    /// Sliding attention window (Mistral), in tokens including the current one.
    pub sliding_window: Option<usize>,
    /// Bias on q/k/v projections (Qwen2).
    pub qkv_bias: bool,
    /// lm_head shares the embedding matrix.
    pub tie_word_embeddings: bool,
}

/// `config.json` fields common to the supported architectures.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// e.g. `llama`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// KV heads (defaults to heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head dim (defaults to hidden/heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Vocabulary.
    pub vocab_size: usize,
    /// RMSNorm eps.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    /// RoPE scaling object.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Context length.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Sliding window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2: whether the sliding window is used at all.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Llama: bias on attention projections.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// Tied embeddings.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Activation; only silu is supported.
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// EOS id(s).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// BOS id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Checkpoint dtype (`float16`, `bfloat16`, `float32`), as transformers < 4.56 writes it.
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// The same under the key newer transformers (5.x) write.
    #[serde(default)]
    pub dtype: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f32 {
    10000.0
}
fn default_max_pos() -> usize {
    4096
}

impl HfConfig {
    /// The checkpoint's dtype from either key (`dtype` wins, it is the newer one).
    pub fn checkpoint_dtype(&self) -> Option<&str> {
        self.dtype.as_deref().or(self.torch_dtype.as_deref())
    }

    /// Which supported architecture this config describes.
    pub fn architecture(&self) -> Result<Architecture> {
        let by_name = |n: &str| match n {
            "LlamaForCausalLM" | "llama" => Some(Architecture::Llama),
            "MistralForCausalLM" | "mistral" => Some(Architecture::Mistral),
            "Qwen2ForCausalLM" | "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        };
        if let Some(a) = self.architectures.first() {
            return by_name(a).ok_or_else(|| ShardError::UnsupportedArchitecture {
                name: a.clone(),
                supported: Architecture::SUPPORTED,
            });
        }
        match &self.model_type {
            Some(t) => by_name(t).ok_or_else(|| ShardError::UnsupportedArchitecture {
                name: t.clone(),
                supported: Architecture::SUPPORTED,
            }),
            None => Err(ShardError::InvalidConfig(
                "config.json has neither `architectures` nor `model_type`".into(),
            )),
        }
    }

    /// The fields shared by every architecture; arch files adjust the rest.
    pub fn base_config(&self, architecture: Architecture) -> Result<ModelConfig> {
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(ShardError::InvalidConfig(format!(
                    "hidden_act `{act}` is not supported (only silu)"
                )));
            }
        }
        if self.num_attention_heads == 0
            || (!self.hidden_size.is_multiple_of(self.num_attention_heads)
                && self.head_dim.is_none())
        {
            return Err(ShardError::InvalidConfig(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if num_kv_heads == 0 || !self.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(ShardError::InvalidConfig(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
                self.num_attention_heads
            )));
        }
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads);
        if !head_dim.is_multiple_of(2) {
            return Err(ShardError::InvalidConfig(format!(
                "head_dim {head_dim} must be even for RoPE"
            )));
        }
        Ok(ModelConfig {
            architecture,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.vocab_size,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling: parse_rope_scaling(self.rope_scaling.as_ref())?,
            rope_interleaved: false,
            max_position_embeddings: self.max_position_embeddings,
            sliding_window: None,
            qkv_bias: self.attention_bias.unwrap_or(false),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
        })
    }

    /// EOS ids listed in config.json (a number or a list).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        ids_of(self.eos_token_id.as_ref())
    }
}

/// A JSON number or list of numbers as ids.
pub fn ids_of(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_rope_scaling(v: Option<&serde_json::Value>) -> Result<Option<RopeScaling>> {
    let Some(obj) = v.and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let num = |k: &str| obj.get(k).and_then(|x| x.as_f64());
    let factor = num("factor").unwrap_or(1.0) as f32;
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0) as f32,
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0) as f32,
            original_max_position_embeddings: num("original_max_position_embeddings")
                .unwrap_or(8192.0) as usize,
        })),
        other => Err(ShardError::InvalidConfig(format!(
            "rope_scaling type `{other}` is not supported (supported: default, linear, llama3)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: serde_json::Value) -> HfConfig {
        let mut base = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).expect("config")
    }

    #[test]
    fn reads_llama3_rope_scaling() {
        let c = cfg(
            serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
        );
        let m = c.base_config(Architecture::Llama).expect("ok");
        assert_eq!(m.head_dim, 16);
        assert!(
            matches!(m.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0)
        );
    }

    #[test]
    fn rejects_unknown_architecture_and_rope() {
        let c = cfg(serde_json::json!({"architectures": ["GPTNeoXForCausalLM"]}));
        let e = c.architecture().expect_err("unsupported");
        assert!(e.to_string().contains("GPTNeoXForCausalLM"), "{e}");
        let c = cfg(serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 2.0}}));
        assert!(c.base_config(Architecture::Llama).is_err());
    }

    #[test]
    fn rejects_bad_head_layout() {
        let c = cfg(serde_json::json!({"num_key_value_heads": 3}));
        let e = c.base_config(Architecture::Llama).expect_err("gqa");
        assert!(e.to_string().contains("num_key_value_heads 3"), "{e}");
    }

    #[test]
    fn reads_the_checkpoint_dtype_under_either_key() {
        assert_eq!(
            cfg(serde_json::json!({"torch_dtype": "float16"})).checkpoint_dtype(),
            Some("float16")
        );
        assert_eq!(
            cfg(serde_json::json!({"dtype": "bfloat16"})).checkpoint_dtype(),
            Some("bfloat16")
        );
        assert_eq!(cfg(serde_json::json!({})).checkpoint_dtype(), None);
    }

    #[test]
    fn a_zero_sliding_window_means_none() {
        let c = cfg(serde_json::json!({"sliding_window": 0}));
        assert_eq!(
            crate::models::mistral::config(&c)
                .expect("ok")
                .sliding_window,
            None
        );
        let c = cfg(serde_json::json!({"sliding_window": 0, "use_sliding_window": true}));
        assert_eq!(
            crate::models::qwen2::config(&c).expect("ok").sliding_window,
            None
        );
        let c = cfg(serde_json::json!({"sliding_window": 64}));
        assert_eq!(
            crate::models::mistral::config(&c)
                .expect("ok")
                .sliding_window,
            Some(64)
        );
    }
}
