//! Loading a tokenizer and chat template from a GGUF file's metadata.

use super::*;
use candle_core::quantized::gguf_file::{self, Value};
use clap::Parser;

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

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// A byte-level GPT-2 style tokenizer with ChatML specials and a ChatML template.
fn write_gguf(path: &Path) {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut tokens: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
    let mut types: Vec<Value> = specials.iter().map(|_| Value::I32(3)).collect();
    tokens.extend(byte_chars());
    tokens.push("He".into());
    types.resize(tokens.len(), Value::I32(1));
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let metadata: Vec<(&str, Value)> = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", strings(vec!["H e".into()])),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.chat_template", Value::String(template.into())),
    ];
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &refs, &[]).unwrap();
}

fn args(tokenizer: &Path) -> Args {
    Args::try_parse_from([
        "text-generation-router",
        "--tokenizer-name",
        tokenizer.to_str().unwrap(),
    ])
    .unwrap()
}

#[test]
fn gguf_file_gives_tokenizer_and_template() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    write_gguf(&path);
    let (tokenizer, template) = load_tokenizer_and_template(&args(&path)).unwrap();
    let tokenizer = tokenizer.expect("tokenizer from GGUF");
    let encoding = tokenizer.encode("Hello", false).unwrap();
    assert_eq!(encoding.get_tokens()[0], "He");
    let template = template.expect("template from GGUF");
    let messages =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": "hi"}])).unwrap();
    assert_eq!(
        template.apply(messages, None).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn model_directory_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"max_position_embeddings": 2048}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": "{{ bos_token }}{{ messages[0].content }}", "bos_token": "<s>"}"#,
    )
    .unwrap();
    let a = args(dir.path());
    assert_eq!(model_max_positions(&a.tokenizer_name), Some(2048));
    let (tokenizer, template) = load_tokenizer_and_template(&a).unwrap();
    assert!(tokenizer.is_none(), "no tokenizer.json in the directory");
    let messages =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": "x"}])).unwrap();
    assert_eq!(template.unwrap().apply(messages, None).unwrap(), "<s>x");
}

#[test]
fn broken_gguf_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"not a gguf").unwrap();
    let err = load_tokenizer_and_template(&args(&path)).unwrap_err();
    assert!(err.to_string().starts_with("Tokenizer error:"), "{err}");
}
