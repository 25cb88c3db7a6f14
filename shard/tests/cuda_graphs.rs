//! Decode through CUDA graphs gives what the eager forward gives: the same tiny models run in
//! two engines on the GPU, one with graphs and one without, over batches that shrink (so the
//! bucket changes), get padded (3 sequences in a bucket of 4) and grow past a slot-table
//! bucket. Needs a GPU (run the CUDA test binary on a GPU machine); without one it says so.
#![cfg(feature = "cuda")]

mod common;

use candle_core::DType;
use common::engine::{config, new_request as request, warmed_engine};
use std::collections::BTreeMap;
use text_generation_shard::engine::{Engine, NewBatch, NewRequest};

/// Generated ids and logprobs per request id.
type Outputs = BTreeMap<u64, (Vec<u32>, Vec<f32>)>;

fn engine(model: &std::path::Path, dtype: DType, graphs: &[usize]) -> Engine {
    warmed_engine(model, dtype, config(8192, graphs, false), 512)
}

/// Prefills `requests` as one batch, then decodes until every request is done.
fn generate(e: &mut Engine, requests: Vec<NewRequest>) -> Outputs {
    let mut out = Outputs::new();
    let mut step = e
        .prefill(NewBatch { id: 1, requests }, None)
        .expect("prefill");
    loop {
        for g in &step.generations {
            let entry = out.entry(g.request_id).or_default();
            entry.0.extend(&g.tokens.ids);
            entry.1.extend(&g.tokens.logprobs);
        }
        let Some(batch) = step.batch else { break };
        step = e.decode(&[batch.id]).expect("decode");
    }
    out
}

#[test]
fn graph_decode_matches_eager_decode() {
    match text_generation_shard::device::select_device(0) {
        Ok(d) if d.is_cuda() => {}
        _ => {
            eprintln!("no CUDA device: skipped");
            return;
        }
    }
    // Llama, and Mistral for the sliding window (16 in the tiny model).
    for arch in [test_models::Arch::Llama, test_models::Arch::Mistral] {
        let dir = tempfile::tempdir().expect("tempdir");
        test_models::write_model(dir.path(), &test_models::TinyModel::new(arch))
            .expect("write model");
        // Sequences end at 40, 150 and 200 new tokens: buckets 4 (3 rows, one padded), 2 and
        // 1; the longest crosses the 128 and 256 slot-table buckets.
        let requests = || {
            vec![
                request(1, 90, 200, 0),
                request(2, 17, 150, 2),
                request(3, 5, 40, 0),
            ]
        };
        let mut graphed = engine(dir.path(), DType::F32, &[1, 2, 4, 8]);
        let mut eager = engine(dir.path(), DType::F32, &[]);
        let got = generate(&mut graphed, requests());
        let want = generate(&mut eager, requests());
        assert!(
            graphed.cuda_graphs_captured() >= 4,
            "{}: only {} graphs were captured",
            arch.name(),
            graphed.cuda_graphs_captured()
        );
        assert_eq!(eager.cuda_graphs_captured(), 0);
        assert_eq!(got.len(), 3);
        let mut worst = 0f32;
        for (id, (ids, lps)) in &want {
            let (gids, glps) = &got[id];
            assert_eq!(gids, ids, "{}: request {id} tokens differ", arch.name());
            for (a, b) in glps.iter().zip(lps) {
                worst = worst.max((a - b).abs());
            }
        }
        eprintln!(
            "{}: {} graphs, tokens identical, logprobs within {worst:.2e}",
            arch.name(),
            graphed.cuda_graphs_captured()
        );
        assert!(worst < 1e-4, "{}: logprobs differ by {worst}", arch.name());
    }
}
