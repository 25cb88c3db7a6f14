//! An in-process shard speaking TGI's v3 gRPC protocol over a Unix socket, with a tiny
//! deterministic "model": every token depends on the whole context, so a token routed to the
//! wrong request shows up. It also checks the router's protocol use: no KV block shared by
//! two live requests, block 0 only for the liveness check, no decode of a finished request,
//! unknown batch or request ids rejected.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use text_generation_proto::v3::text_generation_service_server::{
    TextGenerationService, TextGenerationServiceServer,
};
use text_generation_proto::v3::*;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request as Rpc, Response, Status};

/// Behaviour of one fake shard.
#[derive(Clone, Debug)]
pub struct FakeShardConfig {
    pub rank: u32,
    pub urls: Vec<String>,
    pub block_size: u32,
    pub num_blocks: u32,
    pub support_chunking: bool,
    pub step_delay: Duration,
}

/// Counters a test can read.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub prefills: usize,
    pub decodes: usize,
    pub filters: usize,
    pub clears: usize,
    pub max_batch_size: usize,
    pub chunked_prefills: usize,
    pub live_requests: usize,
    pub cached_batches: usize,
    pub blocks_in_use: usize,
}

#[derive(Clone, Debug)]
struct Seq {
    id: u64,
    prompt: Vec<u32>,
    prefilled: usize,
    generated: Vec<u32>,
    max_new_tokens: u32,
    stop: Vec<String>,
    top_n: u32,
    blocks: Vec<u32>,
    finished: bool,
}

#[derive(Default)]
struct State {
    batches: HashMap<u64, Vec<Seq>>,
    blocks: HashMap<u32, u64>,
    max_prefill_tokens: u32,
    stats: Stats,
}

/// Handle to a running fake shard.
#[derive(Clone)]
pub struct FakeShard {
    config: FakeShardConfig,
    state: Arc<Mutex<State>>,
}

/// The next token: a letter that depends on every token so far.
pub fn next_token(context: &[u32]) -> u32 {
    let mut h: u64 = 1469598103934665603;
    for &t in context {
        h = (h ^ t as u64).wrapping_mul(1099511628211);
    }
    97 + (h % 26) as u32
}

fn text_of(id: u32) -> String {
    char::from_u32(id).map(String::from).unwrap_or_default()
}

impl FakeShard {
    /// Serves on `path` until the runtime ends.
    pub async fn spawn(path: &Path, config: FakeShardConfig) -> FakeShard {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("bind fake shard socket");
        let shard = FakeShard {
            config,
            state: Arc::new(Mutex::new(State::default())),
        };
        let service = TextGenerationServiceServer::new(shard.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        });
        shard
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let s = self.state.lock().unwrap();
        let mut stats = s.stats.clone();
        stats.cached_batches = s.batches.len();
        stats.live_requests = s.batches.values().map(Vec::len).sum();
        stats.blocks_in_use = s.blocks.len();
        stats
    }

    fn owns(&self, id: u64) -> bool {
        id % self.config.urls.len() as u64 == self.config.rank as u64
    }

    fn release(state: &mut State, seqs: &[Seq]) {
        for seq in seqs {
            for b in &seq.blocks {
                state.blocks.remove(b);
            }
        }
    }

    /// One forward over `seqs`: prefill chunks or decode one token each.
    fn step(
        &self,
        state: &mut State,
        seqs: &mut [Seq],
        first_chunks: Option<&HashMap<u64, u32>>,
    ) -> Result<Vec<Generation>, Status> {
        let mut generations = Vec::new();
        let budget = state.max_prefill_tokens.max(1) as usize;
        for seq in seqs.iter_mut() {
            if seq.finished {
                return Err(Status::internal(format!(
                    "request {} decoded after it finished",
                    seq.id
                )));
            }
            if seq.prefilled < seq.prompt.len() {
                let chunk = match first_chunks.and_then(|c| c.get(&seq.id)) {
                    Some(&c) => c as usize,
                    None => budget,
                };
                let chunk = chunk.min(seq.prompt.len() - seq.prefilled);
                if chunk < seq.prompt.len() - seq.prefilled {
                    state.stats.chunked_prefills += 1;
                }
                seq.prefilled += chunk;
                if seq.prefilled < seq.prompt.len() {
                    continue;
                }
            }
            let context: Vec<u32> = seq
                .prompt
                .iter()
                .chain(seq.generated.iter())
                .copied()
                .collect();
            let token = next_token(&context);
            seq.generated.push(token);
            let text: String = seq.generated.iter().map(|&t| text_of(t)).collect();
            let stop_hit = seq
                .stop
                .iter()
                .any(|s| !s.is_empty() && text.ends_with(s.as_str()));
            let length_hit = seq.generated.len() as u32 >= seq.max_new_tokens;
            let generated_text = if length_hit || stop_hit {
                seq.finished = true;
                Some(GeneratedText {
                    text: text.clone(),
                    generated_tokens: seq.generated.len() as u32,
                    finish_reason: if length_hit {
                        FinishReason::Length
                    } else {
                        FinishReason::StopSequence
                    } as i32,
                    seed: None,
                })
            } else {
                None
            };
            if self.owns(seq.id) {
                let top_tokens = if seq.top_n > 0 {
                    vec![Tokens {
                        ids: (0..seq.top_n).map(|k| 97 + k).collect(),
                        logprobs: (0..seq.top_n).map(|k| -(k as f32) - 0.5).collect(),
                        texts: (0..seq.top_n).map(|k| text_of(97 + k)).collect(),
                        is_special: vec![false; seq.top_n as usize],
                    }]
                } else {
                    vec![]
                };
                generations.push(Generation {
                    request_id: seq.id,
                    prefill_tokens: None,
                    tokens: Some(Tokens {
                        ids: vec![token],
                        logprobs: vec![-0.25],
                        texts: vec![text_of(token)],
                        is_special: vec![false],
                    }),
                    generated_text,
                    top_tokens,
                });
            }
        }
        Ok(generations)
    }

    fn cached(id: u64, seqs: &[Seq], budget: u32) -> CachedBatch {
        let current_tokens = seqs
            .iter()
            .map(|s| {
                if s.prefilled < s.prompt.len() {
                    (s.prompt.len() - s.prefilled).min(budget as usize) as u32
                } else {
                    1
                }
            })
            .sum();
        CachedBatch {
            id,
            request_ids: seqs.iter().map(|s| s.id).collect(),
            size: seqs.len() as u32,
            max_tokens: seqs.iter().map(|s| s.blocks.len() as u32).sum::<u32>(),
            current_tokens,
        }
    }

    fn finish_step(&self, state: &mut State, id: u64, seqs: Vec<Seq>) -> Option<CachedBatch> {
        state.stats.max_batch_size = state.stats.max_batch_size.max(seqs.len());
        if seqs.iter().all(|s| s.finished) {
            Self::release(state, &seqs);
            return None;
        }
        let cached = Self::cached(id, &seqs, state.max_prefill_tokens);
        state.batches.insert(id, seqs);
        Some(cached)
    }
}

#[tonic::async_trait]
impl TextGenerationService for FakeShard {
    async fn info(&self, _: Rpc<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            requires_padding: false,
            dtype: "float32".into(),
            device_type: "cpu".into(),
            window_size: None,
            speculate: 0,
            support_chunking: self.config.support_chunking,
            use_prefix_caching: false,
            attention_impl: "paged".into(),
            block_size: self.config.block_size,
        }))
    }

    async fn service_discovery(
        &self,
        _: Rpc<ServiceDiscoveryRequest>,
    ) -> Result<Response<ServiceDiscoveryResponse>, Status> {
        Ok(Response::new(ServiceDiscoveryResponse {
            urls: self
                .config
                .urls
                .iter()
                .map(|u| format!("unix://{u}"))
                .collect(),
        }))
    }

    async fn clear_cache(
        &self,
        r: Rpc<ClearCacheRequest>,
    ) -> Result<Response<ClearCacheResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        s.stats.clears += 1;
        match r.into_inner().id {
            Some(id) => {
                if let Some(seqs) = s.batches.remove(&id) {
                    Self::release(&mut s, &seqs);
                }
            }
            None => {
                s.batches.clear();
                s.blocks.clear();
            }
        }
        Ok(Response::new(ClearCacheResponse {}))
    }

    async fn filter_batch(
        &self,
        r: Rpc<FilterBatchRequest>,
    ) -> Result<Response<FilterBatchResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.state.lock().unwrap();
        s.stats.filters += 1;
        let seqs = s.batches.remove(&r.batch_id).ok_or_else(|| {
            Status::internal(format!("Batch ID {} not found in cache.", r.batch_id))
        })?;
        for id in &r.request_ids {
            if !seqs.iter().any(|q| q.id == *id) {
                return Err(Status::internal(format!(
                    "request {id} not in batch {}",
                    r.batch_id
                )));
            }
        }
        let (keep, drop): (Vec<Seq>, Vec<Seq>) = seqs
            .into_iter()
            .partition(|q| r.request_ids.contains(&q.id));
        Self::release(&mut s, &drop);
        let cached = Self::cached(r.batch_id, &keep, s.max_prefill_tokens);
        s.batches.insert(r.batch_id, keep);
        Ok(Response::new(FilterBatchResponse {
            batch: Some(cached),
        }))
    }

    async fn warmup(&self, r: Rpc<WarmupRequest>) -> Result<Response<WarmupResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.state.lock().unwrap();
        s.max_prefill_tokens = r.max_prefill_tokens;
        let supported = self.config.num_blocks * self.config.block_size;
        let total = r.max_total_tokens.unwrap_or(supported.min(512));
        let input = r.max_input_tokens.unwrap_or(total - 1);
        Ok(Response::new(WarmupResponse {
            max_supported_total_tokens: Some(supported),
            max_input_tokens: input,
            max_total_tokens: total,
        }))
    }

    async fn prefill(&self, r: Rpc<PrefillRequest>) -> Result<Response<PrefillResponse>, Status> {
        tokio::time::sleep(self.config.step_delay).await;
        let r = r.into_inner();
        let batch = r
            .batch
            .ok_or_else(|| Status::invalid_argument("no batch"))?;
        let mut s = self.state.lock().unwrap();
        s.stats.prefills += 1;
        let mut seqs = Vec::new();
        let mut chunks = HashMap::new();
        if batch.requests.iter().any(|q| q.inputs.contains("explode")) {
            return Err(Status::internal("CUDA out of memory (simulated)"));
        }
        for req in &batch.requests {
            if req.id != u64::MAX {
                for b in &req.blocks {
                    if *b == 0 {
                        return Err(Status::internal(format!(
                            "request {} got reserved block 0",
                            req.id
                        )));
                    }
                    if let Some(other) = s.blocks.get(b) {
                        return Err(Status::internal(format!(
                            "block {b} of request {} is still used by {other}",
                            req.id
                        )));
                    }
                }
                if req.slots.len()
                    < req.blocks.len().saturating_sub(1) * self.config.block_size as usize
                {
                    return Err(Status::internal("slots do not cover blocks"));
                }
                for b in &req.blocks {
                    s.blocks.insert(*b, req.id);
                }
            }
            let bytes = req.inputs.as_bytes();
            let keep = (req.truncate as usize)
                .min(bytes.len())
                .max(1)
                .min(bytes.len());
            let prompt: Vec<u32> = bytes[bytes.len() - keep..]
                .iter()
                .map(|&b| b as u32)
                .collect();
            if let Some(c) = req.chunk_len {
                chunks.insert(req.id, c);
            }
            let stopping = req.stopping_parameters.clone().unwrap_or_default();
            seqs.push(Seq {
                id: req.id,
                prompt,
                prefilled: 0,
                generated: vec![],
                max_new_tokens: stopping.max_new_tokens.max(1),
                stop: stopping.stop_sequences,
                top_n: req.top_n_tokens,
                blocks: if req.id == u64::MAX {
                    vec![]
                } else {
                    req.blocks.clone()
                },
                finished: false,
            });
        }
        let mut generations = self.step(&mut s, &mut seqs, Some(&chunks))?;
        let mut all = Vec::new();
        let id = r.cached_batch.as_ref().map(|c| c.id).unwrap_or(batch.id);
        if let Some(cached) = r.cached_batch {
            let mut old = s.batches.remove(&cached.id).ok_or_else(|| {
                Status::internal(format!("Batch ID {} not found in cache.", cached.id))
            })?;
            // The cached batch advances in the same forward.
            let mut more = self.step(&mut s, &mut old, None)?;
            more.append(&mut generations);
            generations = more;
            all.extend(old);
        }
        all.extend(seqs);
        let next = self.finish_step(&mut s, id, all);
        Ok(Response::new(PrefillResponse {
            generations,
            batch: next,
            forward_ns: 1000,
            decode_ns: 100,
            total_ns: 1100,
            concat_ns: None,
        }))
    }

    async fn decode(&self, r: Rpc<DecodeRequest>) -> Result<Response<DecodeResponse>, Status> {
        tokio::time::sleep(self.config.step_delay).await;
        let r = r.into_inner();
        let mut s = self.state.lock().unwrap();
        s.stats.decodes += 1;
        let first = r
            .batches
            .first()
            .map(|b| b.id)
            .ok_or_else(|| Status::internal("Must provide at least one batch"))?;
        let mut seqs = Vec::new();
        for b in &r.batches {
            let part = s.batches.remove(&b.id).ok_or_else(|| {
                Status::internal(format!("Batch ID {} not found in cache.", b.id))
            })?;
            seqs.extend(part);
        }
        let generations = self.step(&mut s, &mut seqs, None)?;
        let next = self.finish_step(&mut s, first, seqs);
        Ok(Response::new(DecodeResponse {
            generations,
            batch: next,
            forward_ns: 1000,
            decode_ns: 100,
            total_ns: 1100,
            concat_ns: Some(10),
        }))
    }

    async fn health(&self, _: Rpc<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {}))
    }
}

/// The text the fake model generates for `prompt` (byte tokens) in `n` tokens, as sent back.
pub fn expected_text(prompt: &str, n: usize) -> String {
    let mut context: Vec<u32> = prompt.bytes().map(|b| b as u32).collect();
    let mut out = String::new();
    for _ in 0..n {
        let t = next_token(&context);
        context.push(t);
        out.push_str(&text_of(t));
    }
    out
}
