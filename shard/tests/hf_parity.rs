//! Parity with HF transformers: the tiny seeded models served by the shard give the same greedy
//! tokens as transformers (float32, eager attention, full recompute each step) and logprobs
//! within 1e-4. Fixtures come from `scripts/parity/hf_golden.py`; all 8 prompts run in one
//! batch so parity and batching are checked together.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use text_generation_proto::v3 as pb;

const TOLERANCE: f32 = 1e-4;

/// Generated ids, their logprobs and top tokens, per request.
type Generated = (Vec<u32>, Vec<f32>, Vec<pb::Tokens>);

#[derive(serde::Deserialize)]
struct Fixture {
    safetensors_sha256: String,
    new_tokens: u32,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    input_ids: Vec<u32>,
    prompt_logprobs: Vec<Option<f32>>,
    greedy_ids: Vec<u32>,
    greedy_logprobs: Vec<f32>,
    top_tokens: Vec<TopTokens>,
}

#[derive(serde::Deserialize)]
struct TopTokens {
    ids: Vec<u32>,
    logprobs: Vec<f32>,
}

async fn check(arch: test_models::Arch) {
    let path = format!(
        "{}/tests/fixtures/parity/{}.json",
        env!("CARGO_MANIFEST_DIR"),
        arch.name()
    );
    let fixture: Fixture =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture json");
    let model = tiny_model(arch);
    let sha = hex(&Sha256::digest(
        std::fs::read(model.path().join("model.safetensors")).expect("weights"),
    ));
    assert_eq!(
        sha, fixture.safetensors_sha256,
        "the tiny model generator changed: regenerate the fixtures"
    );

    let shard = start_shard(model.path(), &[]);
    let mut c = connect(&shard.socket).await;
    warmup(&mut c, 1024).await;
    let requests = fixture
        .cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let mut r = request(i as u64, &case.prompt, fixture.new_tokens);
            r.prefill_logprobs = true;
            r.top_n_tokens = 5;
            r
        })
        .collect();

    let mut tokens: BTreeMap<u64, Generated> = BTreeMap::new();
    let mut prefill: BTreeMap<u64, pb::Tokens> = BTreeMap::new();
    let mut record = |gens: Vec<pb::Generation>| {
        for g in gens {
            let e = tokens.entry(g.request_id).or_default();
            if let Some(t) = g.tokens {
                e.0.extend(t.ids);
                e.1.extend(t.logprobs);
            }
            e.2.extend(g.top_tokens);
            if let Some(p) = g.prefill_tokens {
                prefill.insert(g.request_id, p);
            }
        }
    };
    let resp = c
        .prefill(pb::PrefillRequest {
            batch: Some(batch(1, requests)),
            cached_batch: None,
        })
        .await
        .expect("prefill")
        .into_inner();
    record(resp.generations);
    let mut cached = resp.batch;
    while let Some(cb) = cached {
        let r = c
            .decode(pb::DecodeRequest { batches: vec![cb] })
            .await
            .expect("decode")
            .into_inner();
        record(r.generations);
        cached = r.batch;
    }

    let mut worst = 0f32;
    for (i, case) in fixture.cases.iter().enumerate() {
        let id = i as u64;
        let pre = &prefill[&id];
        assert_eq!(
            pre.ids,
            case.input_ids,
            "{}: tokenization differs for {:?}",
            arch.name(),
            case.prompt
        );
        for (k, (got, want)) in pre.logprobs.iter().zip(&case.prompt_logprobs).enumerate() {
            match want {
                None => assert!(got.is_nan(), "first prompt logprob must be NaN"),
                Some(w) => {
                    worst = worst.max((got - w).abs());
                    assert!(
                        (got - w).abs() < TOLERANCE,
                        "{} case {i} prompt token {k}: {got} vs {w}",
                        arch.name()
                    );
                }
            }
        }
        let (ids, lps, tops) = &tokens[&id];
        assert_eq!(
            ids,
            &case.greedy_ids,
            "{} case {i}: greedy tokens differ from transformers",
            arch.name()
        );
        for (k, (got, want)) in lps.iter().zip(&case.greedy_logprobs).enumerate() {
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() < TOLERANCE,
                "{} case {i} step {k}: logprob {got} vs {want}",
                arch.name()
            );
        }
        for (k, (got, want)) in tops.iter().zip(&case.top_tokens).enumerate() {
            assert_eq!(
                got.ids,
                want.ids,
                "{} case {i} step {k}: top-5 ids differ",
                arch.name()
            );
            for (g, w) in got.logprobs.iter().zip(&want.logprobs) {
                assert!(
                    (g - w).abs() < TOLERANCE,
                    "{} case {i} step {k}: top logprob {g} vs {w}",
                    arch.name()
                );
            }
        }
    }
    println!(
        "{}: 8 prompts x {} tokens identical, max |logprob diff| = {worst:e}",
        arch.name(),
        fixture.new_tokens
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn llama_matches_transformers() {
    check(test_models::Arch::Llama).await;
}

#[tokio::test]
async fn llama31_rope_scaling_matches_transformers() {
    check(test_models::Arch::Llama31).await;
}

#[tokio::test]
async fn mistral_sliding_window_matches_transformers() {
    check(test_models::Arch::Mistral).await;
}

#[tokio::test]
async fn qwen2_qkv_bias_matches_transformers() {
    check(test_models::Arch::Qwen2).await;
}
