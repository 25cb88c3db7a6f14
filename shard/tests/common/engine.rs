//! In-process engines for tests that compare two engine configurations on one tiny model.

use candle_core::DType;
use std::sync::Arc;
use text_generation_shard::engine::stopping::StoppingParams;
use text_generation_shard::engine::{
    Engine, EngineConfig, KvBudget, NewBatch, NewRequest, WarmupParams,
};
use text_generation_shard::models::{load_model, LoadOptions};
use text_generation_shard::parallel::SingleProcess;
use text_generation_shard::sampling::SamplingParams;

/// A greedy request `id` with a `prompt_len`-character prompt (one token a character in the
/// tiny models) that ignores EOS.
pub fn new_request(
    id: u64,
    prompt_len: usize,
    max_new_tokens: u32,
    top_n_tokens: u32,
) -> NewRequest {
    let text: String = (0..prompt_len)
        .map(|i| char::from(b'a' + ((i * 7 + id as usize) % 26) as u8))
        .collect();
    NewRequest {
        id,
        inputs: text,
        truncate: 0,
        add_special_tokens: false,
        sampling: SamplingParams::default(),
        stopping: StoppingParams {
            max_new_tokens,
            stop_sequences: Vec::new(),
            ignore_eos_token: true,
        },
        prefill_logprobs: false,
        top_n_tokens,
        blocks: Vec::new(),
        slots: Vec::new(),
        cache_len: 0,
        chunk_len: None,
    }
}

/// An engine on device 0 (the GPU in a CUDA build, else the CPU) for `model` in `dtype`,
/// warmed up with `max_prefill_tokens`.
pub fn warmed_engine(
    model: &std::path::Path,
    dtype: DType,
    config: EngineConfig,
    max_prefill_tokens: u32,
) -> Engine {
    let device = text_generation_shard::device::select_device(0).expect("device");
    let loaded = load_model(
        model,
        &LoadOptions {
            dtype: Some(dtype),
            device,
            comm: Arc::new(SingleProcess),
            quantize: None,
        },
    )
    .expect("load");
    let mut e = Engine::new(loaded, config);
    e.warmup(WarmupParams {
        batch: NewBatch {
            id: 0,
            requests: vec![new_request(0, 16, 1, 0)],
        },
        max_input_tokens: None,
        max_prefill_tokens,
        max_total_tokens: None,
    })
    .expect("warmup");
    e
}

/// Engine settings for one shard with a `kv_tokens` cache.
pub fn config(kv_tokens: usize, cuda_graphs: &[usize], run_ahead: bool) -> EngineConfig {
    EngineConfig {
        kv_budget: KvBudget::Tokens(kv_tokens),
        max_input_tokens: None,
        rank: 0,
        world_size: 1,
        cuda_graphs: cuda_graphs.to_vec(),
        run_ahead,
    }
}
