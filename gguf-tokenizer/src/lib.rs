//! Builds a Hugging Face `tokenizers::Tokenizer` from a GGUF file's `tokenizer.*` metadata,
//! so any GGUF can be served without a tokenizer.json.
//!
//! The tokenizer is expressed as the tokenizer.json document that Hugging Face ships for the
//! same model family, then deserialized: the same JSON shapes, the same code paths at run time.
//!
//! Supported `tokenizer.ggml.model` values:
//! - `gpt2`: byte-level BPE; the pre-tokenizer comes from `tokenizer.ggml.pre` (see [`BytePre`]);
//! - `llama`: SentencePiece BPE with byte fallback (Llama 2, Mistral); merges come from
//!   `tokenizer.ggml.merges` when present, otherwise from `tokenizer.ggml.scores` the way
//!   `transformers` converts a SentencePiece model.

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map, Value as Json};
use std::collections::HashMap;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

const SUPPORTED_MODELS: &str = "gpt2, llama";
const SUPPORTED_PRES: &str = "smollm, llama-bpe (llama3, llama-v3), qwen2, gpt2 (gpt-2), default";

/// llama.cpp's `tokenizer.ggml.token_type` values that we map to added tokens.
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split regex, as in Meta's tokenizer.json (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`
/// writes the same thing with the `(?i:…)` group spelled out).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex, as in Qwen's tokenizer.json: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The SentencePiece word-boundary marker.
const SPIECE_UNDERLINE: &str = "\u{2581}";

/// A tokenizer built from GGUF metadata, plus the special-token facts the server needs.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    /// The tokenizer, with special tokens registered and BOS/EOS added as the GGUF asks.
    pub tokenizer: tokenizers::Tokenizer,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, then `eot_token_id` and `eom_token_id` when they differ.
    pub eos_token_ids: Vec<u32>,
    /// Whether encoding prepends BOS (`tokenizer.ggml.add_bos_token`, defaulted as llama.cpp does).
    pub add_bos_token: bool,
    /// `tokenizer.chat_template` (a Jinja template), if the file has one.
    pub chat_template: Option<String>,
    /// Text of the BOS token.
    pub bos_token: Option<String>,
    /// Text of the first EOS token.
    pub eos_token: Option<String>,
}

/// Why a tokenizer could not be built from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum GgufTokenizerError {
    #[error("cannot read GGUF file {path}: {message}")]
    Read { path: String, message: String },
    #[error("GGUF metadata has no `{key}`: the file carries no usable tokenizer, pass a tokenizer.json instead")]
    MissingKey { key: &'static str },
    #[error("GGUF metadata `{key}` is {found}, expected {expected}")]
    BadType {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "unsupported GGUF tokenizer model `{KEY_MODEL} = {model}`; supported: {SUPPORTED_MODELS}"
    )]
    UnsupportedModel { model: String },
    #[error("unsupported GGUF pre-tokenizer `{KEY_PRE} = {pre}`; supported: {SUPPORTED_PRES}")]
    UnsupportedPreTokenizer { pre: String },
    #[error(
        "GGUF metadata `{key}` = {id} is not a token id (the vocabulary has {vocab_size} tokens)"
    )]
    TokenIdOutOfRange {
        key: &'static str,
        id: u64,
        vocab_size: usize,
    },
    #[error("GGUF metadata `{key}` has {len} entries but `{KEY_TOKENS}` has {vocab_size}")]
    LengthMismatch {
        key: &'static str,
        len: usize,
        vocab_size: usize,
    },
    #[error("GGUF merge #{index} `{merge}` is not two tokens separated by a space")]
    BadMerge { index: usize, merge: String },
    #[error("building the tokenizer from GGUF metadata failed: {message}")]
    Build { message: String },
}

/// Byte-level BPE pre-tokenizers, by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BytePre {
    /// GPT-2's regex (ByteLevel `use_regex`); also llama.cpp's `default`.
    Gpt2,
    /// Single digits, then GPT-2's regex (StarCoder/SmolLM).
    SmolLm,
    /// Llama 3's regex, digits in runs of up to three; merges ignored for whole-token words.
    Llama3,
    /// Qwen2's regex, single digits; NFC normalization.
    Qwen2,
}

impl BytePre {
    fn parse(pre: &str) -> Result<Self, GgufTokenizerError> {
        match pre {
            "smollm" => Ok(Self::SmolLm),
            "llama-bpe" | "llama3" | "llama-v3" => Ok(Self::Llama3),
            "qwen2" => Ok(Self::Qwen2),
            "gpt2" | "gpt-2" | "default" => Ok(Self::Gpt2),
            other => Err(GgufTokenizerError::UnsupportedPreTokenizer {
                pre: other.to_string(),
            }),
        }
    }
}

/// Reads tokenizer metadata from an opened GGUF file and builds an HF tokenizer.
///
/// Needs `tokenizer.ggml.model` and `tokenizer.ggml.tokens`; `gpt2` models also need
/// `tokenizer.ggml.merges`, `llama` models need `tokenizer.ggml.scores` when they have no merges.
/// Control tokens (`token_type == 3`) become special added tokens, user-defined ones (`4`)
/// plain added tokens. BOS is prepended when `tokenizer.ggml.add_bos_token` says so; absent,
/// it defaults as in llama.cpp: on for `llama` models and the `llama-bpe` pre-tokenizer.
pub fn tokenizer_from_gguf(content: &Content) -> Result<GgufTokenizer, GgufTokenizerError> {
    let meta = &content.metadata;
    let model =
        string(meta, KEY_MODEL)?.ok_or(GgufTokenizerError::MissingKey { key: KEY_MODEL })?;
    let tokens = token_strings(meta)?;
    let vocab_size = tokens.len();
    let token_types = match meta.get(KEY_TOKEN_TYPE) {
        None => vec![1; vocab_size],
        Some(v) => {
            let types = int_array(v, KEY_TOKEN_TYPE)?;
            if types.len() != vocab_size {
                return Err(GgufTokenizerError::LengthMismatch {
                    key: KEY_TOKEN_TYPE,
                    len: types.len(),
                    vocab_size,
                });
            }
            types
        }
    };

    let token_id = |key: &'static str| -> Result<Option<u32>, GgufTokenizerError> {
        let Some(v) = meta.get(key) else {
            return Ok(None);
        };
        let id = integer(v).ok_or_else(|| bad_type(key, "an unsigned integer", v))?;
        match u32::try_from(id) {
            Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
            _ => Err(GgufTokenizerError::TokenIdOutOfRange {
                key,
                id,
                vocab_size,
            }),
        }
    };
    let bos_token_id = token_id(KEY_BOS)?;
    let mut eos_token_ids = Vec::new();
    for key in [KEY_EOS, KEY_EOT, KEY_EOM] {
        if let Some(id) = token_id(key)? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let unk_token_id = token_id(KEY_UNK)?;

    let (mut doc, default_add_bos) = match model.as_str() {
        "gpt2" => {
            let pre = match string(meta, KEY_PRE)? {
                Some(pre) => BytePre::parse(&pre)?,
                None => BytePre::Gpt2,
            };
            let merges = merges(meta)?.ok_or(GgufTokenizerError::MissingKey { key: KEY_MERGES })?;
            (byte_level_bpe(&tokens, merges, pre), pre == BytePre::Llama3)
        }
        "llama" => {
            let merges = match merges(meta)? {
                Some(merges) => merges,
                None => merges_from_scores(&tokens, &scores(meta, vocab_size)?),
            };
            let add_space_prefix = boolean(meta, KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
            let unk = unk_token_id
                .map(|id| tokens[id as usize].clone())
                .or_else(|| tokens.iter().find(|t| t.as_str() == "<unk>").cloned());
            (
                sentencepiece_bpe(&tokens, merges, unk, add_space_prefix),
                true,
            )
        }
        other => {
            return Err(GgufTokenizerError::UnsupportedModel {
                model: other.to_string(),
            })
        }
    };
    let add_bos_token = boolean(meta, KEY_ADD_BOS)?.unwrap_or(default_add_bos);
    let add_eos_token = boolean(meta, KEY_ADD_EOS)?.unwrap_or(false);

    let text_of = |id: Option<u32>| id.map(|id| tokens[id as usize].clone());
    let bos_token = text_of(bos_token_id);
    let eos_token = text_of(eos_token_ids.first().copied());
    doc["added_tokens"] = added_tokens(&tokens, &token_types);
    let bos = if add_bos_token {
        let id = bos_token_id.ok_or(GgufTokenizerError::MissingKey { key: KEY_BOS })?;
        Some((id, tokens[id as usize].as_str()))
    } else {
        None
    };
    let eos = if add_eos_token {
        let id = eos_token_ids
            .first()
            .copied()
            .ok_or(GgufTokenizerError::MissingKey { key: KEY_EOS })?;
        Some((id, tokens[id as usize].as_str()))
    } else {
        None
    };
    if let Some(template) = template_processing(bos, eos) {
        doc["post_processor"] = match doc["post_processor"].take() {
            Json::Null => template,
            byte_level => json!({"type": "Sequence", "processors": [byte_level, template]}),
        };
    }

    let tokenizer = serde_json::from_value::<tokenizers::Tokenizer>(doc).map_err(|e| {
        GgufTokenizerError::Build {
            message: e.to_string(),
        }
    })?;
    Ok(GgufTokenizer {
        tokenizer,
        bos_token_id,
        eos_token_ids,
        add_bos_token,
        chat_template: string(meta, KEY_CHAT_TEMPLATE)?,
        bos_token,
        eos_token,
    })
}

/// The tokenizer.json document for byte-level BPE, shaped like the upstream files
/// (GPT-2, SmolLM, Llama 3, Qwen2).
fn byte_level_bpe(tokens: &[String], merges: Vec<(String, String)>, pre: BytePre) -> Json {
    let byte_level = |use_regex: bool, trim_offsets: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim_offsets, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    let pre_tokenizer = match pre {
        BytePre::Gpt2 => byte_level(true, true),
        BytePre::SmolLm => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true, true)]}),
        BytePre::Llama3 => json!({"type": "Sequence", "pretokenizers": [
            split(LLAMA3_REGEX), byte_level(false, true)]}),
        BytePre::Qwen2 => json!({"type": "Sequence", "pretokenizers": [
            split(QWEN2_REGEX), byte_level(false, false)]}),
    };
    let normalizer = match pre {
        BytePre::Qwen2 => json!({"type": "NFC"}),
        _ => Json::Null,
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": byte_level(true, false),
        "decoder": byte_level(true, true),
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            // llama.cpp skips merging for words already in the vocabulary on Llama 3, as does
            // Meta's tokenizer.json.
            "ignore_merges": pre == BytePre::Llama3,
            "vocab": vocab_map(tokens),
            "merges": merges_json(merges),
        }
    })
}

/// The tokenizer.json document for SentencePiece BPE with byte fallback, shaped like the
/// Llama 2 / Mistral files: `▁` for spaces (prepended once), `<0xNN>` tokens for unknown bytes.
fn sentencepiece_bpe(
    tokens: &[String],
    merges: Vec<(String, String)>,
    unk: Option<String>,
    add_space_prefix: bool,
) -> Json {
    let replace_space =
        json!({"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_UNDERLINE});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPIECE_UNDERLINE}, replace_space]})
    } else {
        replace_space
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPIECE_UNDERLINE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab_map(tokens),
            "merges": merges_json(merges),
        }
    })
}

/// Token -> id; a token listed twice keeps its first id.
fn vocab_map(tokens: &[String]) -> Json {
    let mut vocab = Map::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if !vocab.contains_key(token) {
            vocab.insert(token.clone(), json!(id));
        }
    }
    Json::Object(vocab)
}

fn merges_json(merges: Vec<(String, String)>) -> Json {
    Json::Array(merges.into_iter().map(|(l, r)| json!([l, r])).collect())
}

/// Control and unknown tokens as special added tokens, user-defined ones as plain added tokens,
/// so they are matched whole in the input instead of going through BPE.
fn added_tokens(tokens: &[String], token_types: &[i64]) -> Json {
    let added = tokens
        .iter()
        .zip(token_types)
        .enumerate()
        .filter_map(|(id, (content, &kind))| {
            let special = match kind {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => true,
                TOKEN_TYPE_USER_DEFINED => false,
                _ => return None,
            };
            Some(
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": special}),
            )
        })
        .collect();
    Json::Array(added)
}

/// HF's TemplateProcessing for `[BOS] $A [EOS]` (pairs: `[BOS] $A [EOS] [BOS] $B [EOS]`).
fn template_processing(bos: Option<(u32, &str)>, eos: Option<(u32, &str)>) -> Option<Json> {
    if bos.is_none() && eos.is_none() {
        return None;
    }
    let special =
        |token: &str, type_id: u32| json!({"SpecialToken": {"id": token, "type_id": type_id}});
    let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    for (seq, type_id, out) in [("A", 0, &mut single), ("B", 1, &mut pair)] {
        if let Some((_, token)) = bos {
            out.push(special(token, type_id));
        }
        out.push(sequence(seq, type_id));
        if let Some((_, token)) = eos {
            out.push(special(token, type_id));
        }
    }
    let pair = [single.clone(), pair].concat();
    let mut special_tokens = Map::new();
    for (id, token) in bos.into_iter().chain(eos) {
        special_tokens.insert(
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
    }
    Some(
        json!({"type": "TemplateProcessing", "single": single, "pair": pair,
                "special_tokens": special_tokens}),
    )
}

/// Merges for a SentencePiece BPE vocabulary, as `transformers`' `SentencePieceExtractor`
/// derives them: every split of a piece into two pieces, ranked by the piece's score
/// (highest first), ties by the ids of the halves.
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        ids.entry(token.as_str()).or_insert(id);
    }
    let mut merges: Vec<(usize, usize, f32)> = Vec::new();
    for (piece, &score) in tokens.iter().zip(scores) {
        let start = merges.len();
        for (split, _) in piece.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&piece[..split]), ids.get(&piece[split..])) {
                merges.push((l, r, score));
            }
        }
        merges[start..].sort_by_key(|&(l, r, _)| (l, r));
    }
    // Stable: equal scores keep vocabulary order.
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    merges
        .into_iter()
        .map(|(l, r, _)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

/// `tokenizer.ggml.tokens`; empty entries get a placeholder, as llama.cpp does.
fn token_strings(meta: &HashMap<String, Value>) -> Result<Vec<String>, GgufTokenizerError> {
    let value = meta
        .get(KEY_TOKENS)
        .ok_or(GgufTokenizerError::MissingKey { key: KEY_TOKENS })?;
    let tokens = string_array(value, KEY_TOKENS)?;
    if tokens.is_empty() {
        return Err(bad_type(KEY_TOKENS, "a non-empty array of strings", value));
    }
    Ok(tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t
            }
        })
        .collect())
}

/// `tokenizer.ggml.merges` as pairs; each entry is `left right`, split at the first space
/// after the first character (as llama.cpp does).
fn merges(
    meta: &HashMap<String, Value>,
) -> Result<Option<Vec<(String, String)>>, GgufTokenizerError> {
    let Some(value) = meta.get(KEY_MERGES) else {
        return Ok(None);
    };
    let merges = string_array(value, KEY_MERGES)?;
    let mut pairs = Vec::with_capacity(merges.len());
    for (index, merge) in merges.into_iter().enumerate() {
        let first = merge.chars().next().map_or(0, char::len_utf8);
        let Some(space) = merge[first..].find(' ').map(|i| i + first) else {
            return Err(GgufTokenizerError::BadMerge { index, merge });
        };
        pairs.push((merge[..space].to_string(), merge[space + 1..].to_string()));
    }
    Ok(Some(pairs))
}

fn scores(
    meta: &HashMap<String, Value>,
    vocab_size: usize,
) -> Result<Vec<f32>, GgufTokenizerError> {
    let value = meta
        .get(KEY_SCORES)
        .ok_or(GgufTokenizerError::MissingKey { key: KEY_SCORES })?;
    let items = array(value, KEY_SCORES, "an array of floats")?;
    let scores = items
        .iter()
        .map(|v| match v {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            other => Err(bad_element(KEY_SCORES, "an array of floats", other)),
        })
        .collect::<Result<Vec<f32>, _>>()?;
    if scores.len() != vocab_size {
        return Err(GgufTokenizerError::LengthMismatch {
            key: KEY_SCORES,
            len: scores.len(),
            vocab_size,
        });
    }
    Ok(scores)
}

fn string(
    meta: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<String>, GgufTokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad_type(key, "a string", other)),
    }
}

fn boolean(
    meta: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<bool>, GgufTokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        // Some converters write flags as integers.
        Some(other) => match integer(other) {
            Some(n) => Ok(Some(n != 0)),
            None => Err(bad_type(key, "a bool", other)),
        },
    }
}

fn array<'a>(
    value: &'a Value,
    key: &'static str,
    expected: &'static str,
) -> Result<&'a [Value], GgufTokenizerError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(bad_type(key, expected, other)),
    }
}

fn string_array(value: &Value, key: &'static str) -> Result<Vec<String>, GgufTokenizerError> {
    array(value, key, "an array of strings")?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(bad_element(key, "an array of strings", other)),
        })
        .collect()
}

fn int_array(value: &Value, key: &'static str) -> Result<Vec<i64>, GgufTokenizerError> {
    array(value, key, "an array of integers")?
        .iter()
        .map(|v| signed(v).ok_or_else(|| bad_element(key, "an array of integers", v)))
        .collect()
}

/// A non-negative integer of any GGUF integer type (converters disagree on u32 vs i32).
fn integer(value: &Value) -> Option<u64> {
    signed(value)
        .and_then(|n| u64::try_from(n).ok())
        .or(match value {
            Value::U64(n) => Some(*n),
            _ => None,
        })
}

fn signed(value: &Value) -> Option<i64> {
    Some(match value {
        Value::U8(n) => i64::from(*n),
        Value::I8(n) => i64::from(*n),
        Value::U16(n) => i64::from(*n),
        Value::I16(n) => i64::from(*n),
        Value::U32(n) => i64::from(*n),
        Value::I32(n) => i64::from(*n),
        Value::U64(n) => i64::try_from(*n).ok()?,
        Value::I64(n) => *n,
        _ => return None,
    })
}

fn bad_type(key: &'static str, expected: &'static str, found: &Value) -> GgufTokenizerError {
    let found = match found {
        Value::Array(items) => match items.first() {
            Some(first) => format!("an array of {:?}", first.value_type()),
            None => "an empty array".to_string(),
        },
        other => format!("{:?}", other.value_type()),
    };
    GgufTokenizerError::BadType {
        key,
        expected,
        found,
    }
}

fn bad_element(key: &'static str, expected: &'static str, element: &Value) -> GgufTokenizerError {
    let found = format!("an array containing {:?}", element.value_type());
    GgufTokenizerError::BadType {
        key,
        expected,
        found,
    }
}

/// Opens the GGUF file at `path` and builds its tokenizer.
pub fn tokenizer_from_gguf_file(
    path: &std::path::Path,
) -> Result<GgufTokenizer, GgufTokenizerError> {
    let read_err = |message: String| GgufTokenizerError::Read {
        path: path.display().to_string(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    let content = Content::read(&mut file).map_err(|e| read_err(e.to_string()))?;
    tokenizer_from_gguf(&content)
}

#[cfg(test)]
mod tests;
