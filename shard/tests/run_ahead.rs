//! Running a batch's next forward ahead of its Decode changes no answer: two engines on the
//! same tiny model, one running ahead and one not, go through the same RPCs (decodes that
//! use the forward run ahead, a FilterBatch, a Prefill joining a cached batch, a Decode of
//! two batches, a ClearCache) and must return identical generations, sampled requests
//! included. On the CPU build this runs on the CPU; the CUDA test binary runs it on the GPU.

mod common;

use candle_core::DType;
use common::engine::{config, new_request as request, warmed_engine};
use text_generation_shard::engine::{Engine, Generation, NewBatch, NewRequest, StepOutput};
use text_generation_shard::sampling::SamplingParams;

/// A request sampled with a seed: its random state must advance once per token, whether or
/// not its forwards ran ahead.
fn sampled(id: u64, prompt_len: usize, max_new_tokens: u32) -> NewRequest {
    let mut r = request(id, prompt_len, max_new_tokens, 0);
    r.sampling = SamplingParams {
        do_sample: true,
        temperature: 0.8,
        top_k: 20,
        seed: 42 + id,
        ..SamplingParams::default()
    };
    r.prefill_logprobs = true;
    r
}

fn engine(model: &std::path::Path, run_ahead: bool) -> Engine {
    warmed_engine(model, DType::F32, config(4096, &[1, 2, 4], run_ahead), 64)
}

/// Runs one fixed sequence of RPCs; returns every generation in the order they came.
fn script(e: &mut Engine) -> Vec<Generation> {
    let mut out = Vec::new();
    let mut take = |s: StepOutput| {
        out.extend(s.generations);
        s.batch.map(|b| b.id)
    };
    // Request 3's 80-token prompt is prefilled in chunks (64-token budget): its second
    // chunk is a forward run ahead too.
    let first = vec![
        request(1, 20, 40, 0),
        request(2, 7, 30, 2),
        sampled(3, 80, 40),
    ];
    let mut b1 = take(
        e.prefill(
            NewBatch {
                id: 1,
                requests: first,
            },
            None,
        )
        .expect("prefill 1"),
    );
    for _ in 0..6 {
        b1 = take(e.decode(&[b1.expect("batch 1")]).expect("decode 1"));
    }
    // Drop request 2 mid-generation.
    e.filter_batch(1, &[1, 3]).expect("filter");
    for _ in 0..3 {
        b1 = take(
            e.decode(&[b1.expect("batch 1")])
                .expect("decode 1 filtered"),
        );
    }
    // A new request joins the cached batch.
    let joined = NewBatch {
        id: 2,
        requests: vec![sampled(4, 12, 12)],
    };
    b1 = take(e.prefill(joined, b1).expect("prefill joining 1"));
    for _ in 0..4 {
        b1 = take(e.decode(&[b1.expect("batch 1")]).expect("decode joined"));
    }
    // A separate batch, then both decoded together until the end.
    let b3 = take(
        e.prefill(
            NewBatch {
                id: 3,
                requests: vec![request(5, 9, 25, 0)],
            },
            None,
        )
        .expect("prefill 3"),
    );
    let mut ids: Vec<u64> = [b1, b3].into_iter().flatten().collect();
    let mut steps = 0;
    while !ids.is_empty() {
        let joined = take(e.decode(&ids).expect("decode"));
        ids = joined.into_iter().collect();
        steps += 1;
        assert!(steps < 200, "the script does not end");
        if steps == 10 {
            // A second short batch, cleared before it is decoded.
            let b6 = take(
                e.prefill(
                    NewBatch {
                        id: 6,
                        requests: vec![request(6, 5, 10, 0)],
                    },
                    None,
                )
                .expect("prefill 6"),
            );
            if let Some(id) = b6 {
                e.clear_cache(Some(id));
            }
        }
    }
    out
}

/// Batches of the same shape give the same logits on one device (NaN: the first prompt
/// token's logprob).
fn assert_close(got: &[f32], want: &[f32], id: u64) {
    assert_eq!(got.len(), want.len(), "request {id}");
    for (a, b) in got.iter().zip(want) {
        let same = (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-4;
        assert!(same, "request {id}: logprob {a} vs {b}");
    }
}

#[test]
fn running_ahead_changes_no_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    test_models::write_model(
        dir.path(),
        &test_models::TinyModel::new(test_models::Arch::Llama),
    )
    .expect("write model");
    let mut ahead = engine(dir.path(), true);
    let mut plain = engine(dir.path(), false);
    let got = script(&mut ahead);
    let want = script(&mut plain);
    assert_eq!(plain.run_ahead_counts().launched, 0);
    let counts = ahead.run_ahead_counts();
    eprintln!("{counts:?}");
    // Every step whose batch stayed cached launched one; the Decodes of unchanged batches
    // used theirs, the filter, the joining prefill and the two-batch decode did not.
    assert!(counts.used >= 30, "{counts:?}");
    assert!(counts.launched > counts.used, "{counts:?}");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.request_id, w.request_id);
        assert_eq!(g.tokens.ids, w.tokens.ids, "request {}", g.request_id);
        assert_eq!(g.tokens.texts, w.tokens.texts);
        assert_eq!(g.top_tokens, w.top_tokens);
        assert_eq!(g.generated_text, w.generated_text);
        assert_close(&g.tokens.logprobs, &w.tokens.logprobs, g.request_id);
        assert_eq!(g.prefill_tokens.is_some(), w.prefill_tokens.is_some());
        if let (Some(gp), Some(wp)) = (&g.prefill_tokens, &w.prefill_tokens) {
            assert_eq!((&gp.ids, &gp.texts), (&wp.ids, &wp.texts));
            assert_close(&gp.logprobs, &wp.logprobs, g.request_id);
        }
    }
    assert_eq!(ahead.cached_batches(), 0);
    assert_eq!(plain.cached_batches(), 0);
}
