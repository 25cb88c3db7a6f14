//! Helpers shared by unit tests: a tiny whitespace word-level tokenizer.

use std::collections::HashMap;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::Tokenizer;

/// A tokenizer where every whitespace-separated word is one token; `<s>`=1, `</s>`=2.
pub fn word_tokenizer() -> Tokenizer {
    let mut vocab: HashMap<String, u32> = HashMap::new();
    vocab.insert("<unk>".into(), 0);
    vocab.insert("<s>".into(), 1);
    vocab.insert("</s>".into(), 2);
    for (i, w) in ["hello", "world", "a", "b", "c", "the", "cat"]
        .iter()
        .enumerate()
    {
        vocab.insert((*w).to_string(), 3 + i as u32);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .expect("valid word-level model");
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    tokenizer
}
