//! Tiny, seeded, random HF-layout models for tests and parity fixtures.
//!
//! `write_model(dir, &TinyModel::new(Arch::Llama))` writes `config.json`,
//! `generation_config.json`, `tokenizer.json`, `tokenizer_config.json` and safetensors weights
//! exactly as `transformers` would save them, so the same directory loads in tgi-rs and in
//! HF transformers. Same spec + seed → byte-identical files.

pub mod tokenizer;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Errors while writing a model.
#[derive(Debug, thiserror::Error)]
pub enum TestModelError {
    /// Filesystem error, with the path involved.
    #[error("writing {path}: {source}")]
    Io {
        /// File being written.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Safetensors serialisation error.
    #[error("serialising safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// Architectures the tiny models cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2 style (plain RoPE).
    Llama,
    /// Llama 3.1 style (`rope_scaling.rope_type = llama3`).
    Llama31,
    /// Mistral with a small sliding window, so the window matters in tests.
    Mistral,
    /// Qwen2 (bias on q/k/v).
    Qwen2,
}

impl Arch {
    /// All architectures.
    pub const ALL: [Arch; 4] = [Arch::Llama, Arch::Llama31, Arch::Mistral, Arch::Qwen2];

    /// Short name used for directories and fixtures.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Llama31 => "llama31",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// Stored weight dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    /// float32
    F32,
    /// float16
    F16,
    /// bfloat16
    BF16,
}

/// Shape and storage of one tiny model.
#[derive(Debug, Clone)]
pub struct TinyModel {
    /// Architecture.
    pub arch: Arch,
    /// RNG seed for the weights.
    pub seed: u64,
    /// Hidden size.
    pub hidden: usize,
    /// MLP intermediate size.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Maximum positions.
    pub max_positions: usize,
    /// Mistral sliding window.
    pub sliding_window: usize,
    /// Weight dtype on disk.
    pub dtype: StoredDtype,
    /// Number of safetensors files (>1 writes an index too).
    pub files: usize,
}

impl TinyModel {
    /// The default tiny shape for `arch`: 8 heads / 4 KV heads (divisible by 1, 2 and 4 shards).
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            seed: 42,
            hidden: 128,
            intermediate: 256,
            layers: 2,
            heads: 8,
            kv_heads: 4,
            max_positions: 512,
            sliding_window: 16,
            dtype: StoredDtype::F32,
            files: 1,
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// `config.json` as transformers writes it.
    pub fn config_json(&self) -> Value {
        let (arch_name, model_type) = match self.arch {
            Arch::Llama | Arch::Llama31 => ("LlamaForCausalLM", "llama"),
            Arch::Mistral => ("MistralForCausalLM", "mistral"),
            Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        let dtype = match self.dtype {
            StoredDtype::F32 => "float32",
            StoredDtype::F16 => "float16",
            StoredDtype::BF16 => "bfloat16",
        };
        let mut cfg = json!({
            "architectures": [arch_name],
            "model_type": model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "max_position_embeddings": self.max_positions,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "vocab_size": tokenizer::VOCAB_SIZE,
            "tie_word_embeddings": false,
            "torch_dtype": dtype,
            "bos_token_id": tokenizer::BOS_ID,
            "eos_token_id": tokenizer::IM_END_ID,
            "attention_bias": false,
            "mlp_bias": false,
        });
        match self.arch {
            Arch::Llama => {}
            Arch::Llama31 => {
                cfg["rope_theta"] = json!(500000.0);
                cfg["rope_scaling"] = json!({
                    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 32
                });
            }
            Arch::Mistral => cfg["sliding_window"] = json!(self.sliding_window),
            Arch::Qwen2 => {
                cfg["use_sliding_window"] = json!(false);
                cfg["sliding_window"] = json!(null);
            }
        }
        cfg
    }

    /// Tensor names and shapes in HF layout, in a fixed order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, hd) = (self.hidden, self.intermediate, self.head_dim());
        let (q, kv) = (self.heads * hd, self.kv_heads * hd);
        let v = tokenizer::VOCAB_SIZE;
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            if self.arch == Arch::Qwen2 {
                out.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
                out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
                out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        out.push(("lm_head.weight".to_string(), vec![v, h]));
        out
    }

    /// Seeded values for every tensor (f32), in `tensor_shapes` order.
    pub fn tensor_values(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (self.arch as u64) << 32);
        self.tensor_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let fan_in = *shape.last().unwrap_or(&1) as f32;
                let mut data: Vec<f32> = if name.ends_with("norm.weight") {
                    (0..n).map(|_| 1.0 + rng.random_range(-0.2..0.2)).collect()
                } else if name.ends_with(".bias") {
                    (0..n).map(|_| rng.random_range(-0.1..0.1)).collect()
                } else {
                    // Uniform with std ≈ 1/sqrt(fan_in) keeps activations O(1) through the layers.
                    let a = (3.0 / fan_in).sqrt();
                    (0..n).map(|_| rng.random_range(-a..a)).collect()
                };
                if name == "lm_head.weight" {
                    // Zero rows for non-ASCII bytes and the special tokens: their logit is
                    // exactly 0 while the max over 128 random logits is positive, so greedy
                    // decoding emits ASCII only (every token is readable text) and never EOS
                    // (generation lengths in tests are exactly max_new_tokens).
                    let h = shape[1];
                    for row in 128..tokenizer::VOCAB_SIZE {
                        data[row * h..(row + 1) * h].fill(0.0);
                    }
                }
                (name, shape, data)
            })
            .collect()
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TestModelError> {
    std::fs::write(path, bytes).map_err(|source| TestModelError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn to_bytes(values: &[f32], dtype: StoredDtype) -> Vec<u8> {
    match dtype {
        StoredDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        StoredDtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        StoredDtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

/// Writes the model directory (created if missing).
pub fn write_model(dir: &Path, spec: &TinyModel) -> Result<(), TestModelError> {
    std::fs::create_dir_all(dir).map_err(|source| TestModelError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    write_file(&dir.join("config.json"), &pretty(&spec.config_json()))?;
    write_file(
        &dir.join("generation_config.json"),
        &pretty(&json!({"bos_token_id": tokenizer::BOS_ID,
                        "eos_token_id": [tokenizer::EOS_ID, tokenizer::IM_END_ID]})),
    )?;
    write_file(
        &dir.join("tokenizer.json"),
        &pretty(&tokenizer::tokenizer_json()),
    )?;
    write_file(
        &dir.join("tokenizer_config.json"),
        &pretty(&tokenizer::tokenizer_config_json(spec.max_positions)),
    )?;

    let dtype = match spec.dtype {
        StoredDtype::F32 => safetensors::Dtype::F32,
        StoredDtype::F16 => safetensors::Dtype::F16,
        StoredDtype::BF16 => safetensors::Dtype::BF16,
    };
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = spec
        .tensor_values()
        .into_iter()
        .map(|(n, s, v)| (n, s, to_bytes(&v, spec.dtype)))
        .collect();
    let files = spec.files.max(1);
    let per_file = tensors.len().div_ceil(files);
    let mut weight_map = BTreeMap::new();
    for (f, chunk) in tensors.chunks(per_file).enumerate() {
        let name = if files == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", f + 1, files)
        };
        let views = chunk
            .iter()
            .map(|(n, s, b)| {
                weight_map.insert(n.clone(), name.clone());
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, s.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let bytes = safetensors::tensor::serialize(views, Some(meta))?;
        write_file(&dir.join(&name), &bytes)?;
    }
    if files > 1 {
        let index = json!({"metadata": {}, "weight_map": weight_map});
        write_file(&dir.join("model.safetensors.index.json"), &pretty(&index))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = TinyModel::new(Arch::Llama).tensor_values();
        let b = TinyModel::new(Arch::Llama).tensor_values();
        let mut other = TinyModel::new(Arch::Llama);
        other.seed = 7;
        let c = other.tensor_values();
        assert_eq!(a[1].2, b[1].2);
        assert_ne!(a[1].2, c[1].2);
    }

    #[test]
    fn qwen2_has_qkv_bias_and_llama_does_not() {
        let has_bias = |a: Arch| {
            TinyModel::new(a)
                .tensor_shapes()
                .iter()
                .any(|(n, _)| n.ends_with(".bias"))
        };
        assert!(has_bias(Arch::Qwen2));
        assert!(!has_bias(Arch::Llama));
    }

    #[test]
    fn writes_split_files_with_index() {
        let dir = std::env::temp_dir().join(format!("tiny-split-{}", std::process::id()));
        let mut spec = TinyModel::new(Arch::Mistral);
        spec.files = 2;
        write_model(&dir, &spec).expect("write");
        assert!(dir.join("model-00001-of-00002.safetensors").exists());
        assert!(dir.join("model-00002-of-00002.safetensors").exists());
        let index: Value = serde_json::from_slice(
            &std::fs::read(dir.join("model.safetensors.index.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(
            index["weight_map"].as_object().map(|m| m.len()),
            Some(spec.tensor_shapes().len())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
