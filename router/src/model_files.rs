//! Local model files the router reads: tokenizer, tokenizer config (chat template), config
//! (context length), or a GGUF file carrying the tokenizer and chat template in its metadata.

use crate::chat_template::{self, ChatTemplate};
use crate::cli::Args;
use crate::error::RouterError;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Finds a model file in a local directory or the local hub cache (nothing is downloaded).
pub fn find_model_file(model: &str, file: &str) -> Option<PathBuf> {
    let direct = Path::new(model).join(file);
    if direct.is_file() {
        return Some(direct);
    }
    let cache = std::env::var("HUGGINGFACE_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")))
        .ok()?;
    let snapshots = cache
        .join(format!("models--{}", model.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(file))
        .find(|p| p.is_file())
}

/// `max_position_embeddings` (or `max_seq_len` / `n_positions`) from the model's `config.json`.
pub fn model_max_positions(model: &str) -> Option<u32> {
    let path = find_model_file(model, "config.json")?;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    ["max_position_embeddings", "max_seq_len", "n_positions"]
        .iter()
        .find_map(|key| config.get(*key)?.as_u64())
        .map(|v| v.min(u32::MAX as u64) as u32)
}

/// The parsed `tokenizer_config.json` (`--tokenizer-config-path` wins).
pub fn load_tokenizer_config(args: &Args) -> Option<serde_json::Value> {
    let path = match &args.tokenizer_config_path {
        Some(p) => Some(PathBuf::from(p)),
        None => find_model_file(&args.tokenizer_name, "tokenizer_config.json"),
    }?;
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::warn!("could not parse {}: {err}", path.display());
            None
        }
    }
}

/// `tokenizer.json` of the model, if present.
pub fn load_tokenizer(args: &Args) -> Option<Tokenizer> {
    let path = find_model_file(&args.tokenizer_name, "tokenizer.json")?;
    match Tokenizer::from_file(&path) {
        Ok(t) => Some(t),
        Err(err) => {
            tracing::warn!("could not load {}: {err}", path.display());
            None
        }
    }
}

/// Tokenizer and chat template for `--tokenizer-name`: a model directory (or hub-cache id)
/// with `tokenizer.json`/`tokenizer_config.json`, or a `.gguf` file whose metadata holds both.
/// An explicit `--tokenizer-config-path` overrides the GGUF template.
pub fn load_tokenizer_and_template(
    args: &Args,
) -> Result<(Option<Tokenizer>, Option<ChatTemplate>), RouterError> {
    let path = Path::new(&args.tokenizer_name);
    if path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        let gguf = text_generation_gguf_tokenizer::tokenizer_from_gguf_file(path)
            .map_err(|e| RouterError::Tokenizer(e.to_string()))?;
        let template = match (&args.tokenizer_config_path, gguf.chat_template) {
            (Some(_), _) | (None, None) => match load_tokenizer_config(args) {
                Some(cfg) => chat_template::from_tokenizer_config(&cfg)?,
                None => None,
            },
            (None, Some(template)) => {
                Some(ChatTemplate::new(template, gguf.bos_token, gguf.eos_token)?)
            }
        };
        return Ok((Some(gguf.tokenizer), template));
    }
    let template = match load_tokenizer_config(args) {
        Some(cfg) => chat_template::from_tokenizer_config(&cfg)?,
        None => None,
    };
    Ok((load_tokenizer(args), template))
}

#[cfg(test)]
mod tests;
