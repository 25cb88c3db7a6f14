//! The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF, tokenizer built from the GGUF
//! metadata) loads, and answers a ChatML prompt with readable text that ends at `<|im_end|>`.
//! The model comes from `scripts/fetch-default-model.sh` (run by `.ci/run`).

mod common;

use common::*;
use std::path::PathBuf;
use text_generation_proto::v3 as pb;

fn default_model() -> Option<PathBuf> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must fetch the default model first: scripts/fetch-default-model.sh"
    );
    eprintln!(
        "skipping: {} not found (run scripts/fetch-default-model.sh)",
        p.display()
    );
    None
}

#[tokio::test]
async fn default_gguf_answers_a_chatml_prompt() {
    let Some(model) = default_model() else { return };
    let shard = start_shard(&model, &[]);
    let mut c = connect(&shard.socket).await;
    let info = c.info(pb::InfoRequest {}).await.expect("info").into_inner();
    assert_eq!(info.device_type, "cpu");
    let w = warmup(&mut c, 512).await;
    assert_eq!(w.max_total_tokens, 8192, "GGUF context length");

    let prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let mut r = request(1, prompt, 64);
    r.prefill_logprobs = true;
    let out = generate_all(&mut c, batch(1, vec![r])).await;
    let (ids, last) = &out[&1];
    let gt = last.generated_text.as_ref().expect("finished");
    println!(
        "answer ({} tokens, {:?}): {:?}",
        ids.len(),
        gt.finish_reason,
        gt.text
    );
    assert_eq!(
        gt.finish_reason,
        pb::FinishReason::EosToken as i32,
        "an instruct model ends its turn with <|im_end|>"
    );
    assert_eq!(*ids.last().expect("ids"), 2, "<|im_end|> is id 2");
    assert!(
        !gt.text.contains("<|im_end|>"),
        "special tokens are skipped in the final text"
    );
    let words = gt.text.split_whitespace().count();
    assert!(words >= 2, "a real answer, not noise: {:?}", gt.text);
    assert!(gt.text.is_ascii(), "plain English: {:?}", gt.text);
    assert!(gt.text.contains("Paris"), "{:?}", gt.text);

    // Deterministic: the same request again gives the same answer.
    let again = generate_all(&mut c, batch(2, vec![request(2, prompt, 64)])).await;
    assert_eq!(&again[&2].0, ids);
}
