//! GGUF files (llama.cpp): quantized weights served through candle's quantized matmul.
//!
//! Tensors are asked for by their HF names and mapped to GGUF names here, so model files need
//! not know where weights came from.

use super::{LinearWeight, WeightSource};
use crate::error::{Result, ShardError};
use crate::parallel::Split;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An opened GGUF file: metadata in memory, tensors read on demand.
pub struct GgufWeights {
    path: PathBuf,
    content: Content,
    file: Mutex<File>,
}

/// HF tensor name -> GGUF tensor name (llama.cpp's `llama` architecture naming).
pub fn gguf_name(hf: &str) -> String {
    let rename = |rest: &str| -> String {
        let map = [
            ("input_layernorm.weight", "attn_norm.weight"),
            ("self_attn.q_proj.weight", "attn_q.weight"),
            ("self_attn.k_proj.weight", "attn_k.weight"),
            ("self_attn.v_proj.weight", "attn_v.weight"),
            ("self_attn.q_proj.bias", "attn_q.bias"),
            ("self_attn.k_proj.bias", "attn_k.bias"),
            ("self_attn.v_proj.bias", "attn_v.bias"),
            ("self_attn.o_proj.weight", "attn_output.weight"),
            ("post_attention_layernorm.weight", "ffn_norm.weight"),
            ("mlp.gate_proj.weight", "ffn_gate.weight"),
            ("mlp.up_proj.weight", "ffn_up.weight"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
        ];
        map.iter()
            .find(|(h, _)| *h == rest)
            .map(|(_, g)| g.to_string())
            .unwrap_or_else(|| rest.to_string())
    };
    match hf {
        "model.embed_tokens.weight" => "token_embd.weight".into(),
        "model.norm.weight" => "output_norm.weight".into(),
        "lm_head.weight" => "output.weight".into(),
        _ => match hf.strip_prefix("model.layers.") {
            Some(rest) => match rest.split_once('.') {
                Some((layer, tail)) => format!("blk.{layer}.{}", rename(tail)),
                None => hf.to_string(),
            },
            None => hf.to_string(),
        },
    }
}

impl GgufWeights {
    /// Opens `path` and reads its metadata and tensor index.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|source| ShardError::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
        let content = Content::read(&mut file).map_err(|e| ShardError::BadFile {
            path: path.to_path_buf(),
            message: format!("not a readable GGUF file: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file: Mutex::new(file),
        })
    }

    /// The parsed GGUF header (metadata + tensor infos).
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// A metadata value.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn qtensor(&self, hf_name: &str, device: &Device) -> Result<QTensor> {
        let name = gguf_name(hf_name);
        if !self.content.tensor_infos.contains_key(&name) {
            return Err(ShardError::MissingTensor {
                name: format!("{hf_name} (GGUF `{name}`)"),
                source_desc: self.describe(),
            });
        }
        let mut file = self
            .file
            .lock()
            .map_err(|_| ShardError::InvalidArgument("GGUF reader lock poisoned".into()))?;
        Ok(self.content.tensor(&mut *file, &name, device)?)
    }
}

fn refuse_split(name: &str, split: Split) -> Result<()> {
    match split {
        Split::Full => Ok(()),
        Split::Dim { world, .. } => Err(ShardError::Sharding(format!(
            "GGUF tensor `{name}` cannot be split over {world} shards: tensor parallelism over \
             GGUF weights is not supported, use a safetensors model or --num-shard 1"
        ))),
    }
}

impl WeightSource for GgufWeights {
    fn describe(&self) -> String {
        format!("GGUF file {}", self.path.display())
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(&gguf_name(name))
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.content
            .tensor_infos
            .get(&gguf_name(name))
            .map(|i| i.shape.dims().to_vec())
            .ok_or_else(|| ShardError::MissingTensor {
                name: name.to_string(),
                source_desc: self.describe(),
            })
    }

    fn tensor(&self, name: &str, split: Split, dtype: DType, device: &Device) -> Result<Tensor> {
        refuse_split(name, split)?;
        Ok(self
            .qtensor(name, device)?
            .dequantize(device)?
            .to_dtype(dtype)?)
    }

    fn linear(
        &self,
        name: &str,
        split: Split,
        dtype: DType,
        device: &Device,
    ) -> Result<LinearWeight> {
        refuse_split(name, split)?;
        let q = self.qtensor(name, device)?;
        Ok(match q.dtype() {
            // Unquantized matrices stay dense in the model dtype.
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                LinearWeight::Dense(q.dequantize(device)?.to_dtype(dtype)?)
            }
            _ => LinearWeight::Quantized(Arc::new(q)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn maps_hf_names_to_gguf() {
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.weight"),
            "blk.3.attn_q.weight"
        );
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight"),
            "blk.12.ffn_down.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight"),
            "blk.0.ffn_norm.weight"
        );
        assert_eq!(gguf_name("model.norm.weight"), "output_norm.weight");
        assert_eq!(gguf_name("lm_head.weight"), "output.weight");
    }
}
