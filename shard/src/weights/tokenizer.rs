//! The tokenizer a shard uses to tokenize `inputs` and detokenize generated ids, with the EOS
//! ids that stop generation (generation_config.json, then config.json, then the tokenizer).

use crate::error::{Result, ShardError};
use std::collections::HashSet;
use std::path::Path;

/// A tokenizer plus the special-token facts generation needs.
#[derive(Clone)]
pub struct TokenizerBundle {
    /// The HF tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// Ids that end generation unless `ignore_eos_token`.
    pub eos_token_ids: Vec<u32>,
    /// Ids of every special token (for `Tokens.is_special`).
    pub special_ids: HashSet<u32>,
}

impl std::fmt::Debug for TokenizerBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerBundle")
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .field("eos_token_ids", &self.eos_token_ids)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|source| ShardError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ShardError::BadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

fn token_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

impl TokenizerBundle {
    /// Builds the bundle from a tokenizer and EOS ids.
    pub fn new(tokenizer: tokenizers::Tokenizer, eos_token_ids: Vec<u32>) -> Self {
        let special_ids = tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        Self {
            tokenizer,
            eos_token_ids,
            special_ids,
        }
    }

    /// Loads `tokenizer.json` from an HF model directory; EOS ids from
    /// `generation_config.json`, else `config_eos` (config.json), else `tokenizer_config.json`'s
    /// `eos_token`.
    pub fn from_hf_dir(dir: &Path, config_eos: Vec<u32>) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(ShardError::MissingFile {
                what: "tokenizer.json",
                path,
            });
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ShardError::Tokenizer(format!("{}: {e}", path.display())))?;
        let generation = read_json(&dir.join("generation_config.json"))?;
        let mut eos =
            crate::models::config::ids_of(generation.as_ref().and_then(|g| g.get("eos_token_id")));
        if eos.is_empty() {
            eos = config_eos;
        }
        if eos.is_empty() {
            let tc = read_json(&dir.join("tokenizer_config.json"))?;
            if let Some(id) = tc
                .as_ref()
                .and_then(|c| c.get("eos_token"))
                .and_then(token_text)
                .and_then(|t| tokenizer.token_to_id(&t))
            {
                eos.push(id);
            }
        }
        Ok(Self::new(tokenizer, eos))
    }

    /// Tokenizes `text`, keeping only the last `truncate` ids when `truncate > 0` (TGI truncates
    /// on the left).
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
        truncate: usize,
    ) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(|e| ShardError::Tokenizer(format!("encoding failed: {e}")))?;
        let ids = enc.get_ids();
        let start = if truncate > 0 && ids.len() > truncate {
            ids.len() - truncate
        } else {
            0
        };
        Ok(ids[start..].to_vec())
    }

    /// Decodes `ids` (special tokens kept or skipped).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| ShardError::Tokenizer(format!("decoding failed: {e}")))
    }
}
