//! The generation engine: the model, its paged KV cache, and the batches cached between RPCs.
//! Each public method is one of TGI's shard RPCs, on engine types.

mod batch;
#[cfg(feature = "cuda")]
mod cuda_graphs;
mod detokenize;
mod finish;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod graph_inputs;
mod logits;
mod request;
mod run_ahead;
mod step;
pub mod stopping;
pub mod types;

pub use batch::Batch;
pub use detokenize::IncrementalDecoder;
pub use run_ahead::RunAheadCounts;
pub use types::*;

use crate::error::{Result, ShardError};
use crate::kv::{BlockAllocator, CpuPagedCache, PagedAttention, TensorPagedCache, BLOCK_SIZE};
use crate::models::{DecoderModel, LoadedModel};
use crate::sampling::NextTokenChooser;
use crate::weights::tokenizer::TokenizerBundle;
use request::RequestState;
use std::collections::HashMap;
use std::time::Instant;
use stopping::StoppingCriteria;

/// How big the KV cache may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvBudget {
    /// Exactly this many tokens (rounded up to whole blocks).
    Tokens(usize),
    /// This fraction of the host's available memory.
    MemoryFraction(f64),
}

/// Engine settings that do not come from the model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// KV cache size policy.
    pub kv_budget: KvBudget,
    /// Longest accepted prompt (after truncation), if limited.
    pub max_input_tokens: Option<u32>,
    /// This shard's rank.
    pub rank: usize,
    /// Number of shards.
    pub world_size: usize,
    /// Decode batch sizes captured as CUDA graphs (TGI's `CUDA_GRAPHS`); empty: none. Only
    /// used on a GPU with one shard.
    pub cuda_graphs: Vec<usize>,
    /// Queue a kept batch's next forward before answering a step, so the device computes it
    /// while the answer and the next Decode travel (see `run_ahead`). Pays on a GPU, where a
    /// forward only queues work; on the CPU the forward would run before the answer goes.
    pub run_ahead: bool,
}

/// Static facts reported by Info.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineInfo {
    /// Compute dtype name (`float32`, `bfloat16`, `float16`).
    pub dtype: String,
    /// `cpu` or `cuda`.
    pub device_type: String,
    /// Sliding window, if any.
    pub window_size: Option<u32>,
    /// Tokens per KV block.
    pub block_size: u32,
    /// Chunked prefill supported.
    pub support_chunking: bool,
}

/// Owns the model, the KV cache and the cached batches.
pub struct Engine {
    model: DecoderModel,
    tokenizer: TokenizerBundle,
    kv: Option<Box<dyn PagedAttention>>,
    allocator: BlockAllocator,
    batches: HashMap<u64, Batch>,
    /// The forward queued for a cached batch's next Decode.
    ahead: Option<run_ahead::Ahead>,
    run_ahead_counts: RunAheadCounts,
    max_prefill_tokens: usize,
    config: EngineConfig,
    rank: usize,
    world_size: usize,
    /// Decode graphs of the current KV cache (they point into it).
    #[cfg(feature = "cuda")]
    graphs: Option<cuda_graphs::DecodeGraphs>,
}

impl Engine {
    /// An engine for a loaded model; the KV cache is sized at Warmup.
    pub fn new(loaded: LoadedModel, config: EngineConfig) -> Self {
        Self {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            kv: None,
            allocator: BlockAllocator::new(0),
            batches: HashMap::new(),
            ahead: None,
            run_ahead_counts: RunAheadCounts::default(),
            max_prefill_tokens: usize::MAX,
            rank: config.rank,
            world_size: config.world_size.max(1),
            config,
            #[cfg(feature = "cuda")]
            graphs: None,
        }
    }

    /// CUDA graphs captured for the current KV cache.
    #[cfg(feature = "cuda")]
    pub fn cuda_graphs_captured(&self) -> usize {
        self.graphs.as_ref().map_or(0, |g| g.captured())
    }

    /// Info RPC.
    pub fn info(&self) -> EngineInfo {
        let dtype = match self.model.dtype() {
            candle_core::DType::BF16 => "bfloat16",
            candle_core::DType::F16 => "float16",
            _ => "float32",
        };
        EngineInfo {
            dtype: dtype.to_string(),
            device_type: crate::device::device_type(self.model.device()).to_string(),
            window_size: self.model.config().sliding_window.map(|w| w as u32),
            block_size: BLOCK_SIZE as u32,
            support_chunking: true,
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TokenizerBundle {
        &self.tokenizer
    }

    /// Free KV blocks the shard can still allocate itself.
    pub fn free_blocks(&self) -> usize {
        self.allocator.free_blocks()
    }

    /// Number of cached batches.
    pub fn cached_batches(&self) -> usize {
        self.batches.len()
    }

    /// ClearCache RPC: drops one batch, or all of them.
    pub fn clear_cache(&mut self, id: Option<u64>) {
        self.drop_ahead(id);
        let dropped: Vec<Batch> = match id {
            Some(id) => self.batches.remove(&id).into_iter().collect(),
            None => self.batches.drain().map(|(_, b)| b).collect(),
        };
        for b in dropped {
            self.release(b.requests);
        }
    }

    /// FilterBatch RPC.
    pub fn filter_batch(&mut self, batch_id: u64, keep: &[u64]) -> Result<BatchSummary> {
        let batch = self
            .batches
            .get_mut(&batch_id)
            .ok_or(ShardError::BatchNotFound(batch_id))?;
        let removed = batch.filter(keep)?;
        let summary = batch.summary();
        self.release(removed);
        Ok(summary)
    }

    fn release(&mut self, requests: impl IntoIterator<Item = RequestState>) {
        for r in requests {
            if r.owned_blocks {
                self.allocator.free(&r.blocks);
            }
        }
    }

    fn kv_tokens(&self) -> Result<usize> {
        let cfg = self.model.config();
        let kv_heads = cfg.num_kv_heads / self.world_size;
        let device = self.model.device();
        let per_token = if device.is_cpu() {
            CpuPagedCache::bytes_per_token(cfg.num_layers, kv_heads, cfg.head_dim)
        } else {
            TensorPagedCache::bytes_per_token(
                cfg.num_layers,
                kv_heads,
                cfg.head_dim,
                self.model.dtype(),
            )
        };
        Ok(match self.config.kv_budget {
            KvBudget::Tokens(n) => n,
            KvBudget::MemoryFraction(f) if device.is_cpu() => {
                (available_memory_bytes() as f64 * f) as usize / per_token.max(1)
            }
            KvBudget::MemoryFraction(f) => device_kv_bytes(device, f)? / per_token.max(1),
        })
    }

    fn new_cache(&self, num_blocks: usize) -> Result<Box<dyn PagedAttention>> {
        let cfg = self.model.config();
        let kv_heads = cfg.num_kv_heads / self.world_size;
        let device = self.model.device();
        Ok(if device.is_cpu() {
            Box::new(CpuPagedCache::new(
                cfg.num_layers,
                num_blocks,
                kv_heads,
                cfg.head_dim,
            ))
        } else {
            #[cfg(feature = "cuda")]
            if device.is_cuda() {
                return Ok(Box::new(crate::kv::CudaPagedCache::new(
                    cfg.num_layers,
                    num_blocks,
                    kv_heads,
                    cfg.head_dim,
                    self.model.dtype(),
                    device,
                )?));
            }
            Box::new(TensorPagedCache::new(
                cfg.num_layers,
                num_blocks,
                kv_heads,
                cfg.head_dim,
                self.model.dtype(),
                device,
            )?)
        })
    }

    /// Decode graphs for a new cache: on a GPU with one shard (collectives are not captured).
    #[cfg(feature = "cuda")]
    fn new_graphs(&self) -> Option<cuda_graphs::DecodeGraphs> {
        if !self.model.device().is_cuda() {
            return None;
        }
        if self.world_size > 1 {
            tracing::info!("CUDA graphs are not used with tensor parallelism");
            return None;
        }
        cuda_graphs::DecodeGraphs::new(&self.config.cuda_graphs)
    }

    /// Warmup RPC: sizes the KV cache, runs the warmup batch's prefill, reports limits.
    pub fn warmup(&mut self, params: WarmupParams) -> Result<WarmupResult> {
        self.clear_cache(None);
        let cfg = self.model.config().clone();
        // Free the old cache first so a GPU's free memory is measured without it (and the
        // graphs that point into it before that).
        #[cfg(feature = "cuda")]
        {
            self.graphs = None;
        }
        self.kv = None;
        let num_blocks = self.kv_tokens()?.div_ceil(BLOCK_SIZE).max(2);
        let prefill_blocks: usize =
            params.max_prefill_tokens as usize / BLOCK_SIZE + params.batch.requests.len() + 1;
        if prefill_blocks > num_blocks {
            return Err(ShardError::WarmupTooLarge(params.max_prefill_tokens));
        }
        self.kv = Some(self.new_cache(num_blocks)?);
        #[cfg(feature = "cuda")]
        {
            self.graphs = self.new_graphs();
        }
        self.allocator = BlockAllocator::new(num_blocks);
        self.max_prefill_tokens = params.max_prefill_tokens.max(1) as usize;
        // Warmup only prefills, so reserve room for the prompts (+1 token), not for
        // max_new_tokens: a warmup batch may ask for more decode room than the cache holds.
        let mut requests = Vec::new();
        for mut r in params.batch.requests {
            r.blocks.clear();
            r.slots.clear();
            r.stopping.max_new_tokens = 1;
            requests.push(r);
        }
        let batch = NewBatch {
            id: params.batch.id,
            requests,
        };
        if !batch.requests.is_empty() {
            let mut states = self.admit(&batch)?;
            let result = self.step(&mut states);
            self.release(states);
            result?;
        }
        let supported = (num_blocks * BLOCK_SIZE) as u32;
        let max_total = params
            .max_total_tokens
            .unwrap_or_else(|| supported.min(cfg.max_position_embeddings as u32));
        let max_input = params
            .max_input_tokens
            .unwrap_or_else(|| max_total.saturating_sub(1));
        Ok(WarmupResult {
            max_supported_total_tokens: supported,
            max_input_tokens: max_input,
            max_total_tokens: max_total,
        })
    }

    /// Tokenizes and validates a new batch's requests, allocating KV blocks where needed.
    fn admit(&mut self, batch: &NewBatch) -> Result<Vec<RequestState>> {
        if batch.requests.is_empty() {
            return Err(ShardError::InvalidArgument(format!(
                "batch {} has no requests",
                batch.id
            )));
        }
        let mut states: Vec<RequestState> = Vec::with_capacity(batch.requests.len());
        let result = (|| {
            for req in &batch.requests {
                states.push(self.admit_one(req)?);
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.release(states);
            return Err(e);
        }
        Ok(states)
    }

    fn admit_one(&mut self, req: &crate::engine::NewRequest) -> Result<RequestState> {
        let prompt =
            self.tokenizer
                .encode(&req.inputs, req.add_special_tokens, req.truncate as usize)?;
        let max_pos = self.model.config().max_position_embeddings;
        if prompt.len() >= max_pos {
            return Err(ShardError::invalid_request(
                req.id,
                format!(
                    "input has {} tokens, the model supports at most {}",
                    prompt.len(),
                    max_pos - 1
                ),
            ));
        }
        if let Some(max) = self.config.max_input_tokens {
            if prompt.len() > max as usize {
                return Err(ShardError::invalid_request(
                    req.id,
                    format!(
                        "input has {} tokens, more than --max-input-tokens {max}",
                        prompt.len()
                    ),
                ));
            }
        }
        let chooser = NextTokenChooser::new(req.sampling)
            .map_err(|e| ShardError::invalid_request(req.id, e.to_string()))?;
        let stopping =
            StoppingCriteria::new(req.stopping.clone(), self.tokenizer.eos_token_ids.clone());
        let prompt_len = prompt.len();
        let mut state = RequestState::new(req, prompt, chooser, stopping)?;
        if req.blocks.is_empty() && req.slots.is_empty() {
            let tokens = prompt_len + req.stopping.max_new_tokens.max(1) as usize;
            state.blocks = self
                .allocator
                .allocate(req.id, tokens.div_ceil(BLOCK_SIZE))?;
            state.owned_blocks = true;
        }
        if state.capacity() < prompt_len {
            let cap = state.capacity();
            self.release([state]);
            return Err(ShardError::invalid_request(
                req.id,
                format!("{cap} KV slots given for a {prompt_len}-token input"),
            ));
        }
        Ok(state)
    }

    /// Prefill RPC: admits `batch`, joins it to `cached` (chunked prefill), runs one step.
    pub fn prefill(&mut self, batch: NewBatch, cached: Option<u64>) -> Result<StepOutput> {
        let start = Instant::now();
        if self.kv.is_none() {
            return Err(ShardError::NotWarmedUp);
        }
        if let Some(id) = cached {
            if !self.batches.contains_key(&id) {
                return Err(ShardError::BatchNotFound(id));
            }
        }
        if let Some(dup) = batch.requests.iter().find(|r| {
            self.batches
                .values()
                .any(|b| b.requests.iter().any(|x| x.id == r.id))
        }) {
            return Err(ShardError::invalid_request(
                dup.id,
                "a request with this id is already in a cached batch",
            ));
        }
        // A prefill changes the batch it joins, and its forward may replay the CUDA graph
        // whose output holds the logits of the forward run ahead.
        self.drop_ahead(None);
        let states = self.admit(&batch)?;
        let mut concat_ns = None;
        let new_batch = Batch {
            id: batch.id,
            requests: states,
        };
        let mut batch = match cached.and_then(|id| self.batches.remove(&id)) {
            Some(old) => {
                let t = Instant::now();
                let joined = Batch::concatenate(vec![old, new_batch])?;
                concat_ns = Some(t.elapsed().as_nanos() as u64);
                joined
            }
            None => new_batch,
        };
        self.run(&mut batch, start, concat_ns, None)
    }

    /// Decode RPC: joins the listed cached batches and runs one step.
    pub fn decode(&mut self, ids: &[u64]) -> Result<StepOutput> {
        let start = Instant::now();
        if ids.is_empty() {
            return Err(ShardError::InvalidArgument(
                "Decode needs at least one batch".into(),
            ));
        }
        if let Some(missing) = ids.iter().find(|id| !self.batches.contains_key(id)) {
            return Err(ShardError::BatchNotFound(*missing));
        }
        let batches: Vec<Batch> = ids
            .iter()
            .filter_map(|id| self.batches.remove(id))
            .collect();
        let mut concat_ns = None;
        let mut batch = if batches.len() > 1 {
            let t = Instant::now();
            let b = Batch::concatenate(batches)?;
            concat_ns = Some(t.elapsed().as_nanos() as u64);
            b
        } else {
            batches
                .into_iter()
                .next()
                .ok_or_else(|| ShardError::InvalidArgument("no batch".into()))?
        };
        let ahead = self.take_ahead(ids, &batch);
        self.run(&mut batch, start, concat_ns, ahead)
    }

    fn run(
        &mut self,
        batch: &mut Batch,
        start: Instant,
        concat_ns: Option<u64>,
        ahead: Option<step::Launched>,
    ) -> Result<StepOutput> {
        let mut requests = std::mem::take(&mut batch.requests);
        let result = match ahead {
            Some(launched) => self.complete(&mut requests, launched, start),
            None => self.step(&mut requests),
        };
        batch.requests = requests;
        let (generations, times) = match result {
            Ok(r) => r,
            Err(e) => {
                // The batch is lost on error, as in TGI; its shard-owned blocks go back.
                let dropped = std::mem::take(&mut batch.requests);
                self.release(dropped);
                return Err(e);
            }
        };
        let summary = if batch.requests.is_empty() {
            None
        } else {
            let s = batch.summary();
            self.run_ahead(batch);
            self.batches.insert(
                batch.id,
                Batch {
                    id: batch.id,
                    requests: std::mem::take(&mut batch.requests),
                },
            );
            Some(s)
        };
        let total_ns = start.elapsed().as_nanos() as u64;
        tracing::debug!(
            requests = generations.len(),
            forward_us = times.forward_ns / 1000,
            decode_us = times.decode_ns / 1000,
            total_us = total_ns / 1000,
            "step"
        );
        Ok(StepOutput {
            generations,
            batch: summary,
            forward_ns: times.forward_ns,
            decode_ns: times.decode_ns,
            total_ns,
            concat_ns,
        })
    }
}

/// KV bytes on a GPU: `fraction` of its memory less what is in use, with 10% kept back for
/// the activations of the largest prefill.
#[cfg(feature = "cuda")]
fn device_kv_bytes(device: &candle_core::Device, fraction: f64) -> Result<usize> {
    Ok(crate::device::kv_budget_bytes_cuda(device, fraction as f32)? / 10 * 9)
}

#[cfg(not(feature = "cuda"))]
fn device_kv_bytes(device: &candle_core::Device, _fraction: f64) -> Result<usize> {
    Err(ShardError::InvalidArgument(format!(
        "no memory query for {device:?} in this build: pass --max-batch-total-tokens"
    )))
}

/// `MemAvailable` from /proc/meminfo (4 GiB when unknown).
fn available_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}
