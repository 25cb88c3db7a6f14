//! A byte-level BPE tokenizer.json (GPT-2 byte alphabet, no merges) plus ChatML special tokens.
//!
//! Every byte is one token, so any text round-trips; ids 256.. are the special tokens.

use serde_json::{json, Map, Value};

/// Special tokens appended after the 256 byte tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 4] = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"];
/// Id of `<s>`.
pub const BOS_ID: u32 = 256;
/// Id of `</s>`.
pub const EOS_ID: u32 = 257;
/// Id of `<|im_start|>`.
pub const IM_START_ID: u32 = 258;
/// Id of `<|im_end|>`.
pub const IM_END_ID: u32 = 259;
/// Size of the vocabulary: 256 bytes + the special tokens.
pub const VOCAB_SIZE: usize = 256 + SPECIAL_TOKENS.len();

/// ChatML template, as SmolLM2/Qwen ship it.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// GPT-2's reversible byte -> printable char map.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut map = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(chars.iter()) {
        map[*b as usize] = char::from_u32(*c).unwrap_or('?');
    }
    map
}

/// The tokenizer.json document.
pub fn tokenizer_json() -> Value {
    let mut vocab = Map::new();
    for (id, c) in bytes_to_unicode().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(id));
    }
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            vocab.insert(t.to_string(), json!(256 + i));
            json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// The tokenizer_config.json document (ChatML template, no BOS added).
pub fn tokenizer_config_json(max_len: usize) -> Value {
    json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "pad_token": "</s>",
        "unk_token": null,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHATML_TEMPLATE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let map = bytes_to_unicode();
        let mut seen: Vec<char> = map.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(map[b'A' as usize], 'A');
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
    }
}
