//! Prefill and decode throughput of one shard at fixed batch sizes, as TGI's benchmark
//! measures it: a batch of `batch_size` identical-length prompts is prefilled, then decoded
//! for `decode_length` steps (EOS ignored); every step is timed at the client.

use crate::error::BenchError;
use crate::shard_client::ShardClient;
use crate::stats::percentile;

/// Every rank of one model: each RPC goes to all of them concurrently, as the router's
/// sharded client sends it; the cached batch is taken from rank 0.
pub struct Shards(pub Vec<ShardClient>);

impl Shards {
    async fn all<T: Send + 'static, Fut>(
        &self,
        f: impl Fn(ShardClient) -> Fut,
    ) -> Result<Vec<T>, BenchError>
    where
        Fut: std::future::Future<Output = Result<T, BenchError>> + Send + 'static,
    {
        let handles: Vec<_> = self.0.iter().map(|c| tokio::spawn(f(c.clone()))).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.map_err(|e| BenchError::Protocol(e.to_string()))??);
        }
        Ok(out)
    }
}
use std::time::Instant;
use text_generation_proto::v3 as pb;

/// One configuration's results (medians over runs).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeResult {
    /// Requests in the batch.
    pub batch_size: u32,
    /// Prompt tokens per request.
    pub sequence_length: u32,
    /// Decode steps.
    pub decode_length: u32,
    /// Prefill latency.
    pub prefill_ms: f64,
    /// Prompt tokens per second in prefill.
    pub prefill_tokens_per_s: f64,
    /// Median decode step latency.
    pub decode_step_ms: f64,
    /// 90th percentile decode step latency.
    pub decode_step_p90_ms: f64,
    /// Generated tokens per second over the batch (batch_size / step time).
    pub decode_tokens_per_s: f64,
    /// Median of each decode step's client latency minus the shard's own step time
    /// (`total_ns`): what the RPC round trip and the server around the engine add.
    pub decode_overhead_ms: f64,
    /// Median of rank 0's `forward_ns` per decode step: queueing the forward and waiting for
    /// the sampled rows (the device's share of the step).
    pub decode_forward_ms: f64,
    /// Median of rank 0's `decode_ns` per decode step: the host's sampling, stopping and
    /// detokenization after the forward.
    pub decode_host_ms: f64,
    /// The last run's first-request tokens and logprobs (see [`RunOutput::first_request`]).
    #[serde(skip)]
    pub first_request: Vec<(u32, f32)>,
}

fn request(id: u64, sequence_length: u32, decode_length: u32) -> pb::Request {
    pb::Request {
        id,
        // Like TGI's benchmark: a long enough text, left-truncated to exactly the length.
        inputs: "_test ".repeat(sequence_length as usize * 2),
        truncate: sequence_length,
        parameters: Some(pb::NextTokenChooserParameters {
            temperature: 1.0,
            top_p: 1.0,
            typical_p: 1.0,
            repetition_penalty: 1.0,
            ..Default::default()
        }),
        stopping_parameters: Some(pb::StoppingCriteriaParameters {
            max_new_tokens: decode_length,
            stop_sequences: vec![],
            ignore_eos_token: true,
        }),
        add_special_tokens: true,
        ..Default::default()
    }
}

/// Warms every rank up (sizes its KV cache) with a prefill budget of `max_prefill_tokens`.
pub async fn warmup(shards: &Shards, max_prefill_tokens: u32) -> Result<(), BenchError> {
    shards
        .all(move |mut c| async move {
            let r = request(0, 8, 2);
            c.warmup(pb::WarmupRequest {
                batch: Some(pb::Batch {
                    id: u64::MAX,
                    requests: vec![r],
                    size: 1,
                    max_tokens: 0,
                    max_blocks: 0,
                }),
                max_input_tokens: None,
                max_prefill_tokens,
                max_total_tokens: None,
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|status| BenchError::Rpc {
                rpc: "Warmup",
                status,
            })
        })
        .await
        .map(|_| ())
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Prefill latency.
    pub prefill_ns: u64,
    /// Latency of each decode step.
    pub steps_ns: Vec<u64>,
    /// Client latency minus rank 0's `total_ns`, per decode step.
    pub overhead_ns: Vec<u64>,
    /// Rank 0's `forward_ns` and `decode_ns`, per decode step.
    pub forward_ns: Vec<u64>,
    /// See `forward_ns`.
    pub host_ns: Vec<u64>,
    /// The first request's generated tokens and their logprobs (all requests have the same
    /// prompt): compared across shard counts to check tensor-parallel parity.
    pub first_request: Vec<(u32, f32)>,
}

/// Token ids and logprobs of `request_id` among `answers`' generations.
fn tokens_of(request_id: u64, gens: &[pb::Generation], out: &mut Vec<(u32, f32)>) {
    for g in gens.iter().filter(|g| g.request_id == request_id) {
        if let Some(t) = &g.tokens {
            out.extend(t.ids.iter().copied().zip(t.logprobs.iter().copied()));
        }
    }
}

/// One prefill + decode run of `batch_size` requests (ids `batch_id * 1000 + i`) until every
/// request has generated `decode_length` tokens.
pub async fn run_once(
    shards: &Shards,
    batch_id: u64,
    batch_size: u32,
    sequence_length: u32,
    decode_length: u32,
) -> Result<RunOutput, BenchError> {
    let requests: Vec<pb::Request> = (0..batch_size as u64)
        .map(|i| request(batch_id * 1000 + i, sequence_length, decode_length))
        .collect();
    let batch = pb::Batch {
        id: batch_id,
        size: batch_size,
        requests,
        max_tokens: 0,
        max_blocks: 0,
    };
    let t = Instant::now();
    let answers = shards
        .all(move |mut c| {
            let batch = batch.clone();
            async move {
                c.prefill(pb::PrefillRequest {
                    batch: Some(batch),
                    cached_batch: None,
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|status| BenchError::Rpc {
                    rpc: "Prefill",
                    status,
                })
            }
        })
        .await?;
    let prefill_ns = t.elapsed().as_nanos() as u64;
    let first_id = batch_id * 1000;
    let mut first_request = Vec::new();
    for a in &answers {
        tokens_of(first_id, &a.generations, &mut first_request);
    }
    let mut cached = answers.into_iter().next().and_then(|r| r.batch);
    let mut steps = Vec::with_capacity(decode_length as usize);
    let mut overhead = Vec::with_capacity(decode_length as usize);
    let (mut forward, mut host) = (Vec::new(), Vec::new());
    while let Some(cb) = cached {
        let t = Instant::now();
        let answers = shards
            .all(move |mut c| {
                let cb = cb.clone();
                async move {
                    c.decode(pb::DecodeRequest { batches: vec![cb] })
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|status| BenchError::Rpc {
                            rpc: "Decode",
                            status,
                        })
                }
            })
            .await?;
        let step_ns = t.elapsed().as_nanos() as u64;
        steps.push(step_ns);
        if let Some(a) = answers.first() {
            overhead.push(step_ns.saturating_sub(a.total_ns));
            forward.push(a.forward_ns);
            host.push(a.decode_ns);
        }
        let generations: usize = answers.iter().map(|a| a.generations.len()).sum();
        for a in &answers {
            tokens_of(first_id, &a.generations, &mut first_request);
        }
        cached = answers.into_iter().next().and_then(|r| r.batch);
        if generations != batch_size as usize {
            return Err(BenchError::Protocol(format!(
                "{generations} generations for a batch of {batch_size}"
            )));
        }
    }
    Ok(RunOutput {
        prefill_ns,
        steps_ns: steps,
        overhead_ns: overhead,
        forward_ns: forward,
        host_ns: host,
        first_request,
    })
}

/// Runs `runs` times (after one untimed run) and reports medians. Batch ids start at
/// `first_batch_id` (`runs + 1` ids are used); a caller sharing the shard with a router picks
/// ids the router will not use, since the shard keys its cached batches by id.
pub async fn bench(
    client: &Shards,
    batch_size: u32,
    sequence_length: u32,
    decode_length: u32,
    runs: u32,
    first_batch_id: u64,
) -> Result<DecodeResult, BenchError> {
    let base = first_batch_id;
    run_once(
        client,
        base,
        batch_size,
        sequence_length,
        decode_length.min(8),
    )
    .await?;
    let mut prefill = Vec::new();
    let mut steps = Vec::new();
    let mut overhead = Vec::new();
    let (mut forward, mut host) = (Vec::new(), Vec::new());
    let mut first_request = Vec::new();
    for r in 0..runs.max(1) {
        let out = run_once(
            client,
            base + 1 + u64::from(r),
            batch_size,
            sequence_length,
            decode_length,
        )
        .await?;
        prefill.push(out.prefill_ns as f64 / 1e6);
        steps.extend(out.steps_ns.iter().map(|&ns| ns as f64 / 1e6));
        overhead.extend(out.overhead_ns.iter().map(|&ns| ns as f64 / 1e6));
        forward.extend(out.forward_ns.iter().map(|&ns| ns as f64 / 1e6));
        host.extend(out.host_ns.iter().map(|&ns| ns as f64 / 1e6));
        first_request = out.first_request;
    }
    prefill.sort_by(f64::total_cmp);
    steps.sort_by(f64::total_cmp);
    overhead.sort_by(f64::total_cmp);
    forward.sort_by(f64::total_cmp);
    host.sort_by(f64::total_cmp);
    let prefill_ms = percentile(&prefill, 0.5);
    let step = percentile(&steps, 0.5);
    Ok(DecodeResult {
        batch_size,
        sequence_length,
        decode_length,
        prefill_ms,
        prefill_tokens_per_s: f64::from(batch_size * sequence_length) / (prefill_ms / 1e3),
        decode_step_ms: step,
        decode_step_p90_ms: percentile(&steps, 0.9),
        decode_tokens_per_s: f64::from(batch_size) / (step / 1e3),
        decode_overhead_ms: percentile(&overhead, 0.5),
        decode_forward_ms: percentile(&forward, 0.5),
        decode_host_ms: percentile(&host, 0.5),
        first_request,
    })
}
