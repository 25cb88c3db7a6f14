//! Picks the weight source (HF directory or GGUF file) and the architecture for a model path,
//! then loads the decoder and its tokenizer.

use super::config::{Architecture, HfConfig, ModelConfig};
use super::decoder::DecoderModel;
use super::gguf_config::config_from_gguf;
use crate::error::{Result, ShardError};
use crate::parallel::Comm;
use crate::weights::gguf::GgufWeights;
use crate::weights::gguf_tokenizer::tokenizer_from_gguf;
use crate::weights::quantize::{LoadQuantization, QuantizingSource};
use crate::weights::safetensors::SafetensorsWeights;
use crate::weights::tokenizer::TokenizerBundle;
use crate::weights::WeightSource;
use candle_core::{DType, Device};
use std::path::Path;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype; `None` picks f32 on CPU and the checkpoint's half type on GPU.
    pub dtype: Option<DType>,
    /// Where weights and activations live.
    pub device: Device,
    /// This rank's communicator.
    pub comm: Comm,
    /// `--quantize`: quantize a dense checkpoint's linear weights while loading.
    pub quantize: Option<LoadQuantization>,
}

/// A model ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network.
    pub model: DecoderModel,
    /// Its tokenizer and EOS ids.
    pub tokenizer: TokenizerBundle,
    /// Chat template found with the weights (GGUF metadata), if any.
    pub chat_template: Option<String>,
}

fn read_hf_config(dir: &Path) -> Result<HfConfig> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|_| ShardError::MissingFile {
        what: "config.json",
        path: path.clone(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ShardError::BadFile {
        path,
        message: e.to_string(),
    })
}

fn default_dtype(device: &Device, checkpoint: Option<&str>) -> DType {
    if device.is_cpu() {
        return DType::F32;
    }
    match checkpoint {
        Some("float16") => DType::F16,
        Some("float32") => DType::F32,
        _ => DType::BF16,
    }
}

/// Loads the model at `path`: an HF directory (config.json + safetensors + tokenizer.json) or a
/// `.gguf` file.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    if !path.exists() {
        return Err(ShardError::MissingFile {
            what: "model (an HF model directory or a .gguf file)",
            path: path.to_path_buf(),
        });
    }
    if path.is_file() {
        return load_gguf(path, opts);
    }
    let hf = read_hf_config(path)?;
    let config: ModelConfig = match hf.architecture()? {
        Architecture::Llama => super::llama::config(&hf)?,
        Architecture::Mistral => super::mistral::config(&hf)?,
        Architecture::Qwen2 => super::qwen2::config(&hf)?,
    };
    let dtype = opts
        .dtype
        .unwrap_or_else(|| default_dtype(&opts.device, hf.checkpoint_dtype()));
    let tokenizer = TokenizerBundle::from_hf_dir(path, hf.eos_token_ids())?;
    let weights = SafetensorsWeights::open(path)?;
    let model = match opts.quantize {
        Some(mode) => {
            let quantized = QuantizingSource::new(&weights, mode, &opts.device)?;
            DecoderModel::load(&quantized, &config, &opts.comm, dtype, &opts.device)?
        }
        None => DecoderModel::load(&weights, &config, &opts.comm, dtype, &opts.device)?,
    };
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template: None,
    })
}

fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    if opts.quantize.is_some() {
        return Err(ShardError::InvalidConfig(format!(
            "--quantize applies to safetensors checkpoints; {} is a GGUF file, already quantized",
            path.display()
        )));
    }
    let weights = GgufWeights::open(path)?;
    let config = config_from_gguf(&weights)?;
    let tok =
        tokenizer_from_gguf(weights.content()).map_err(|e| ShardError::Tokenizer(e.to_string()))?;
    let dtype = opts
        .dtype
        .unwrap_or_else(|| default_dtype(&opts.device, None));
    let model = DecoderModel::load(
        &weights as &dyn WeightSource,
        &config,
        &opts.comm,
        dtype,
        &opts.device,
    )?;
    Ok(LoadedModel {
        model,
        tokenizer: TokenizerBundle::new(tok.tokenizer, tok.eos_token_ids),
        chat_template: tok.chat_template,
    })
}
