//! All shards as one: every RPC goes to every shard concurrently; generations are merged
//! (each shard answers only for `id % world_size == rank`).

use super::grpc::{Client, StepResult, StepTimings};
use crate::error::ClientError;
use futures::future::join_all;
use text_generation_proto::v3::{
    input_chunk::Chunk, Batch, CachedBatch, InfoResponse, Input, InputChunk,
    NextTokenChooserParameters, Request, StoppingCriteriaParameters, WarmupRequest,
};

/// The router's view of the shard group.
#[derive(Clone, Debug)]
pub struct ShardedClient {
    clients: Vec<Client>,
}

fn all_ok<T>(results: Vec<Result<T, ClientError>>) -> Result<Vec<T>, ClientError> {
    results.into_iter().collect()
}

fn merge_steps(results: Vec<Result<StepResult, ClientError>>) -> Result<StepResult, ClientError> {
    let mut generations = Vec::new();
    let mut batch = None;
    let mut timings = StepTimings::default();
    for (i, (g, b, t)) in all_ok(results)?.into_iter().enumerate() {
        generations.extend(g);
        if i == 0 {
            batch = b;
        }
        timings = timings.max(t);
    }
    Ok((generations, batch, timings))
}

impl ShardedClient {
    /// Wraps already connected clients.
    pub fn new(clients: Vec<Client>) -> Self {
        ShardedClient { clients }
    }

    /// Connects to the master, discovers the others and connects to each.
    pub async fn connect_uds(master: &str) -> Result<Self, ClientError> {
        let master = Client::connect_uds(master).await?;
        let urls = master.service_discovery().await.map_err(|e| {
            ClientError::Connection(format!("Server does not support v3 interface ({e})"))
        })?;
        let clients = join_all(urls.iter().map(|u| Client::connect_uds(u))).await;
        Ok(ShardedClient::new(all_ok(clients)?))
    }

    /// Number of shards.
    pub fn world_size(&self) -> usize {
        self.clients.len()
    }

    /// `Info` of the last shard (as TGI).
    pub async fn info(&self) -> Result<InfoResponse, ClientError> {
        let infos = all_ok(join_all(self.clients.iter().map(|c| c.info())).await)?;
        infos.into_iter().last().ok_or(ClientError::EmptyBatch)
    }

    /// `Health` on every shard.
    pub async fn health(&self) -> Result<(), ClientError> {
        all_ok(join_all(self.clients.iter().map(|c| c.health())).await).map(|_| ())
    }

    /// `ClearCache` on every shard.
    pub async fn clear_cache(&self, batch_id: Option<u64>) -> Result<(), ClientError> {
        all_ok(join_all(self.clients.iter().map(|c| c.clear_cache(batch_id))).await).map(|_| ())
    }

    /// `FilterBatch` on every shard; the first shard's batch is kept.
    pub async fn filter_batch(
        &self,
        batch_id: u64,
        request_ids: Vec<u64>,
    ) -> Result<Option<CachedBatch>, ClientError> {
        let results = join_all(
            self.clients
                .iter()
                .map(|c| c.filter_batch(batch_id, request_ids.clone())),
        )
        .await;
        Ok(all_ok(results)?.into_iter().next().flatten())
    }

    /// `Warmup` on every shard with TGI's warmup batch; smallest tuple wins.
    pub async fn warmup(
        &self,
        params: &WarmupParams,
    ) -> Result<(Option<u32>, u32, u32), ClientError> {
        let request = WarmupRequest {
            batch: Some(warmup_batch(params)),
            max_input_tokens: params.max_input_tokens,
            max_prefill_tokens: params.max_prefill_tokens,
            max_total_tokens: params.max_total_tokens,
        };
        let results = join_all(self.clients.iter().map(|c| c.warmup(request.clone()))).await;
        all_ok(results)?
            .into_iter()
            .min()
            .ok_or(ClientError::EmptyBatch)
    }

    /// `Prefill` on every shard, generations merged.
    pub async fn prefill(
        &self,
        batch: Batch,
        cached_batch: Option<CachedBatch>,
    ) -> Result<StepResult, ClientError> {
        let results = join_all(
            self.clients
                .iter()
                .map(|c| c.prefill(batch.clone(), cached_batch.clone())),
        )
        .await;
        merge_steps(results)
    }

    /// `Decode` on every shard, generations merged.
    pub async fn decode(&self, batches: Vec<CachedBatch>) -> Result<StepResult, ClientError> {
        let results = join_all(self.clients.iter().map(|c| c.decode(batches.clone()))).await;
        merge_steps(results)
    }

    /// The real liveness check: a one-token prefill in reserved block 0.
    pub async fn model_health(&self) -> Result<(), ClientError> {
        let request = Request {
            id: u64::MAX,
            inputs: "liveness".to_string(),
            input_chunks: Some(text_input("liveness")),
            truncate: 1,
            add_special_tokens: true,
            prefill_logprobs: false,
            parameters: Some(NextTokenChooserParameters {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                typical_p: 1.0,
                do_sample: false,
                seed: 0,
                repetition_penalty: 1.0,
                frequency_penalty: 0.0,
                watermark: false,
                grammar: String::new(),
                grammar_type: 0,
            }),
            stopping_parameters: Some(StoppingCriteriaParameters {
                max_new_tokens: 1,
                stop_sequences: vec![],
                ignore_eos_token: false,
            }),
            top_n_tokens: 0,
            blocks: vec![0],
            slots: vec![0],
            cache_len: 0,
            adapter_id: None,
            chunk_len: None,
        };
        let batch = Batch {
            id: u64::MAX,
            requests: vec![request],
            size: 1,
            max_tokens: 2,
            max_blocks: 1,
        };
        self.prefill(batch, None).await.map(|_| ())
    }
}

/// A single text chunk.
pub fn text_input(text: &str) -> Input {
    Input {
        chunks: vec![InputChunk {
            chunk: Some(Chunk::Text(text.to_string())),
        }],
    }
}

/// What the router asks the shards to warm up for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmupParams {
    /// `--max-input-tokens`, if given (echoed by the shard).
    pub max_input_tokens: Option<u32>,
    /// `--max-batch-prefill-tokens`.
    pub max_prefill_tokens: u32,
    /// `--max-total-tokens`, if given.
    pub max_total_tokens: Option<u32>,
    /// `--max-batch-size`, if given.
    pub max_batch_size: Option<usize>,
    /// Longest prompt the model takes (`max_position_embeddings - 1`), when known: without
    /// `--max-input-tokens` the warmup prompts are capped to it so the shard accepts them.
    pub model_max_input: Option<u32>,
}

/// TGI's warmup batch: `"_test " * truncate` prompts until the prefill budget is covered.
/// Text only: the image chunk TGI adds is left out for text-only shards.
pub fn warmup_batch(params: &WarmupParams) -> Batch {
    let WarmupParams {
        max_input_tokens,
        max_prefill_tokens,
        max_total_tokens,
        max_batch_size,
        model_max_input,
    } = *params;
    let max_input = max_input_tokens
        .or(model_max_input)
        .unwrap_or(max_prefill_tokens)
        .max(1);
    let mut n_tokens = 0u32;
    let mut requests = Vec::new();
    while n_tokens < max_prefill_tokens {
        let truncate = max_input.min(max_prefill_tokens - n_tokens);
        let inputs = "_test ".repeat(truncate as usize);
        requests.push(Request {
            id: requests.len() as u64,
            inputs: inputs.clone(),
            input_chunks: Some(text_input(&inputs)),
            truncate,
            add_special_tokens: true,
            prefill_logprobs: true,
            parameters: Some(NextTokenChooserParameters {
                temperature: 0.9,
                top_k: 10,
                top_p: 0.9,
                typical_p: 0.9,
                do_sample: false,
                seed: 0,
                repetition_penalty: 1.2,
                frequency_penalty: 0.1,
                watermark: true,
                grammar: String::new(),
                grammar_type: 0,
            }),
            stopping_parameters: Some(StoppingCriteriaParameters {
                max_new_tokens: max_total_tokens
                    .map(|t| t.saturating_sub(truncate).max(1))
                    .unwrap_or(1),
                stop_sequences: vec![],
                ignore_eos_token: true,
            }),
            top_n_tokens: 20,
            blocks: vec![],
            slots: vec![],
            cache_len: 0,
            adapter_id: None,
            chunk_len: None,
        });
        n_tokens += truncate;
        if max_batch_size.is_some_and(|max| requests.len() >= max) {
            break;
        }
    }
    Batch {
        id: 0,
        size: requests.len() as u32,
        requests,
        max_tokens: max_input_tokens.unwrap_or(0),
        max_blocks: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_batch_covers_prefill_budget() {
        let p = |input, prefill, total, size, model| WarmupParams {
            max_input_tokens: input,
            max_prefill_tokens: prefill,
            max_total_tokens: total,
            max_batch_size: size,
            model_max_input: model,
        };
        let b = warmup_batch(&p(Some(100), 250, Some(200), None, None));
        let truncates: Vec<u32> = b.requests.iter().map(|r| r.truncate).collect();
        assert_eq!(truncates, vec![100, 100, 50]);
        assert_eq!(b.size, 3);
        let first = &b.requests[0];
        assert_eq!(first.inputs, "_test ".repeat(100));
        assert_eq!(
            first.stopping_parameters.as_ref().unwrap().max_new_tokens,
            100
        );
        assert!(first.stopping_parameters.as_ref().unwrap().ignore_eos_token);
        let capped = warmup_batch(&p(Some(10), 100, None, Some(2), None));
        assert_eq!(capped.requests.len(), 2);
        assert_eq!(
            capped.requests[0]
                .stopping_parameters
                .as_ref()
                .unwrap()
                .max_new_tokens,
            1
        );
        // Without --max-input-tokens, prompts stay below the model's context.
        let by_model = warmup_batch(&p(None, 1000, None, None, Some(511)));
        assert!(by_model.requests.iter().all(|r| r.truncate <= 511));
        assert_eq!(
            by_model.requests.iter().map(|r| r.truncate).sum::<u32>(),
            1000
        );
        assert_eq!(
            warmup_batch(&p(None, 300, None, None, None)).requests[0].truncate,
            300
        );
    }

    #[test]
    fn step_merge_keeps_first_batch_and_slowest_timings() {
        let t = |n| StepTimings {
            forward_ns: n,
            decode_ns: n,
            total_ns: n,
            concat_ns: None,
        };
        let b = |id| {
            Some(CachedBatch {
                id,
                request_ids: vec![],
                size: 0,
                max_tokens: 0,
                current_tokens: 0,
            })
        };
        let g = |id| text_generation_proto::v3::Generation {
            request_id: id,
            ..Default::default()
        };
        let merged = merge_steps(vec![
            Ok((vec![g(0)], b(7), t(5))),
            Ok((vec![g(1)], b(7), t(9))),
        ])
        .unwrap();
        assert_eq!(
            merged.0.iter().map(|g| g.request_id).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(merged.1.unwrap().id, 7);
        assert_eq!(merged.2.total_ns, 9);
        let failed = merge_steps(vec![
            Ok((vec![], None, t(1))),
            Err(ClientError::Generation("boom".into())),
        ]);
        assert_eq!(failed.unwrap_err().to_string(), "Server error: boom");
    }
}
