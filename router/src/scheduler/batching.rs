//! TGI's batching loop (§6.2): prefill new requests, decode the running batch, admit more
//! between steps, stream generations out and filter finished or disconnected requests.

use super::queue::{Entry, Queue};
use crate::client::{ShardedClient, StepTimings};
use crate::error::{ClientError, RouterError};
use crate::infer::types::{FinishReason, GeneratedText, InferStreamResponse, PrefillToken, Token};
use nohash_hasher::IntMap;
use std::sync::Arc;
use std::time::Instant;
use text_generation_proto::v3::{Batch, CachedBatch, Generation, Tokens};
use tokio::sync::Notify;

/// Budgets and policies of the loop.
#[derive(Clone, Debug)]
pub struct BatchingConfig {
    pub waiting_served_ratio: f32,
    pub max_batch_prefill_tokens: u32,
    pub max_batch_total_tokens: u32,
    pub max_waiting_tokens: usize,
    pub max_batch_size: Option<usize>,
    pub support_chunking: bool,
}

/// Runs forever, woken by `notifier` whenever a request is appended.
pub async fn batching_task(
    client: ShardedClient,
    config: BatchingConfig,
    queue: Queue,
    notifier: Arc<Notify>,
) {
    loop {
        notifier.notified().await;
        while let Some((mut entries, batch)) = queue
            .next_batch(
                None,
                config.max_batch_size,
                config.max_batch_prefill_tokens,
                config.max_batch_total_tokens,
            )
            .await
        {
            let mut cached = prefill(&client, batch, None, &mut entries).await;
            let mut waiting_tokens = 1;
            while let Some(batch) = cached {
                let mut batches = vec![batch];
                let current = &batches[0];
                metrics::gauge!("tgi_batch_current_size").set(current.size as f64);
                metrics::gauge!("tgi_batch_current_max_tokens").set(current.max_tokens as f64);
                let token_budget = config
                    .max_batch_total_tokens
                    .saturating_sub(current.max_tokens);
                let (min_size, max_size, prefill_budget) = if config.support_chunking {
                    (
                        None,
                        None,
                        config
                            .max_batch_prefill_tokens
                            .saturating_sub(current.current_tokens),
                    )
                } else {
                    let min = if waiting_tokens >= config.max_waiting_tokens {
                        None
                    } else {
                        Some((current.size as f32 * config.waiting_served_ratio).floor() as usize)
                    };
                    let max = config
                        .max_batch_size
                        .map(|m| m.saturating_sub(current.size as usize));
                    (min, max, config.max_batch_prefill_tokens)
                };
                if let Some((mut new_entries, new_batch)) = queue
                    .next_batch(min_size, max_size, prefill_budget, token_budget)
                    .await
                {
                    let reason = if config.support_chunking {
                        "chunking"
                    } else if min_size.is_some() {
                        "backpressure"
                    } else {
                        "wait_exceeded"
                    };
                    metrics::counter!("tgi_batch_concat", "reason" => reason).increment(1);
                    if config.support_chunking {
                        entries.extend(new_entries);
                        let merged = prefill(&client, new_batch, batches.pop(), &mut entries).await;
                        match merged {
                            Some(b) => batches = vec![b],
                            None => break,
                        }
                    } else if let Some(b) =
                        prefill(&client, new_batch, None, &mut new_entries).await
                    {
                        entries.extend(new_entries);
                        batches.push(b);
                    }
                    waiting_tokens = 1;
                }
                cached = decode(&client, batches, &mut entries).await;
                waiting_tokens += 1;
            }
            metrics::gauge!("tgi_batch_current_size").set(0.0);
            metrics::gauge!("tgi_batch_current_max_tokens").set(0.0);
        }
    }
}

fn record_step(method: &'static str, start: Instant, timings: StepTimings, filter_start: Instant) {
    metrics::histogram!("tgi_batch_forward_duration", "method" => method)
        .record(timings.forward_ns as f64 / 1e9);
    metrics::histogram!("tgi_batch_decode_duration", "method" => method)
        .record(timings.decode_ns as f64 / 1e9);
    metrics::histogram!("tgi_batch_filter_duration", "method" => method)
        .record(filter_start.elapsed().as_secs_f64());
    if let Some(concat) = timings.concat_ns {
        metrics::histogram!("tgi_batch_concat_duration", "method" => "decode")
            .record(concat as f64 / 1e9);
    }
    metrics::histogram!("tgi_batch_inference_duration", "method" => method)
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("tgi_batch_inference_success", "method" => method).increment(1);
}

async fn prefill(
    client: &ShardedClient,
    batch: Batch,
    cached: Option<CachedBatch>,
    entries: &mut IntMap<u64, Entry>,
) -> Option<CachedBatch> {
    let start = Instant::now();
    let ids: Vec<u64> = std::iter::once(batch.id)
        .chain(cached.as_ref().map(|c| c.id))
        .collect();
    metrics::counter!("tgi_batch_inference_count", "method" => "prefill").increment(1);
    match client.prefill(batch, cached).await {
        Ok((generations, next, timings)) => {
            let filter_start = Instant::now();
            filter_send_generations(generations, entries);
            let next = filter_batch(client, next, entries).await;
            record_step("prefill", start, timings, filter_start);
            next
        }
        Err(err) => {
            fail_batch(client, &ids, err, entries, "prefill").await;
            None
        }
    }
}

async fn decode(
    client: &ShardedClient,
    batches: Vec<CachedBatch>,
    entries: &mut IntMap<u64, Entry>,
) -> Option<CachedBatch> {
    let start = Instant::now();
    let ids: Vec<u64> = batches.iter().map(|b| b.id).collect();
    metrics::counter!("tgi_batch_inference_count", "method" => "decode").increment(1);
    match client.decode(batches).await {
        Ok((generations, next, timings)) => {
            let filter_start = Instant::now();
            filter_send_generations(generations, entries);
            let next = filter_batch(client, next, entries).await;
            record_step("decode", start, timings, filter_start);
            next
        }
        Err(err) => {
            fail_batch(client, &ids, err, entries, "decode").await;
            None
        }
    }
}

/// A shard error fails every request of the batch with 424 "Server error: ...".
async fn fail_batch(
    client: &ShardedClient,
    batch_ids: &[u64],
    err: ClientError,
    entries: &mut IntMap<u64, Entry>,
    method: &'static str,
) {
    for id in batch_ids {
        if let Err(e) = client.clear_cache(Some(*id)).await {
            tracing::error!("ClearCache after a failed {method} failed: {e}");
        }
    }
    metrics::counter!("tgi_batch_inference_failure", "method" => method).increment(1);
    tracing::error!("{method} failed: {err}");
    for (_, entry) in entries.drain() {
        metrics::counter!("tgi_request_failure", "err" => "generation").increment(1);
        let _ = entry
            .response_tx
            .send(Err(RouterError::Generation(err.to_string())));
    }
}

/// Sends each generation to its client; removes finished and disconnected entries.
fn filter_send_generations(generations: Vec<Generation>, entries: &mut IntMap<u64, Entry>) {
    for generation in generations {
        let id = generation.request_id;
        let Some(entry) = entries.get(&id) else {
            continue;
        };
        let stopped = if entry.response_tx.is_closed() {
            metrics::counter!("tgi_request_failure", "err" => "dropped").increment(1);
            true
        } else {
            send_responses(generation, entry)
        };
        if stopped {
            // Dropping the entry frees its KV blocks.
            entries.remove(&id);
        }
    }
    // Clients that left while their prompt was still being chunk-prefilled.
    entries.retain(|_, entry| {
        let open = !entry.response_tx.is_closed();
        if !open {
            metrics::counter!("tgi_request_failure", "err" => "dropped").increment(1);
        }
        open
    });
}

fn tokens_of(t: &Tokens) -> Vec<Token> {
    t.ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Token {
            id,
            text: t.texts.get(i).cloned().unwrap_or_default(),
            logprob: t.logprobs.get(i).copied().unwrap_or(f32::NAN),
            special: t.is_special.get(i).copied().unwrap_or(false),
        })
        .collect()
}

fn finish_reason(code: i32) -> FinishReason {
    match code {
        1 => FinishReason::EosToken,
        2 => FinishReason::StopSequence,
        _ => FinishReason::Length,
    }
}

/// Streams one generation; returns true when the request is finished (or the client is gone).
fn send_responses(generation: Generation, entry: &Entry) -> bool {
    let tx = &entry.response_tx;
    if let Some(prefill) = &generation.prefill_tokens {
        let tokens = tokens_of(prefill)
            .into_iter()
            .map(|t| PrefillToken {
                id: t.id,
                text: t.text,
                logprob: t.logprob,
            })
            .collect();
        if tx.send(Ok(InferStreamResponse::Prefill(tokens))).is_err() {
            return true;
        }
    }
    let tokens = generation
        .tokens
        .as_ref()
        .map(tokens_of)
        .unwrap_or_default();
    let n = tokens.len();
    metrics::histogram!("tgi_request_skipped_tokens").record(n.saturating_sub(1) as f64);
    let mut top_tokens = generation.top_tokens.iter().map(tokens_of);
    for (i, token) in tokens.into_iter().enumerate() {
        let top = top_tokens.next().unwrap_or_default();
        let message = match (&generation.generated_text, i + 1 == n) {
            (Some(text), true) => InferStreamResponse::End {
                token,
                top_tokens: top,
                generated_text: GeneratedText {
                    text: text.text.clone(),
                    generated_tokens: text.generated_tokens,
                    finish_reason: finish_reason(text.finish_reason),
                    seed: text.seed,
                },
                start: entry.batch_time.unwrap_or_else(Instant::now),
                queued: entry.queue_time,
            },
            _ => InferStreamResponse::Intermediate {
                token,
                top_tokens: top,
            },
        };
        if tx.send(Ok(message)).is_err() {
            return true;
        }
    }
    generation.generated_text.is_some()
}

/// Drops finished requests from the shard-side batch (`FilterBatch`) or the whole batch
/// (`ClearCache`) when nothing is left.
async fn filter_batch(
    client: &ShardedClient,
    next: Option<CachedBatch>,
    entries: &mut IntMap<u64, Entry>,
) -> Option<CachedBatch> {
    let batch = next?;
    let id = batch.id;
    if entries.is_empty() {
        if let Err(err) = client.clear_cache(Some(id)).await {
            tracing::error!("ClearCache failed: {err}");
        }
        return None;
    }
    let all_tracked = batch.request_ids.len() == entries.len()
        && batch.request_ids.iter().all(|r| entries.contains_key(r));
    if all_tracked {
        return Some(batch);
    }
    let keep: Vec<u64> = batch
        .request_ids
        .iter()
        .copied()
        .filter(|r| entries.contains_key(r))
        .collect();
    match client.filter_batch(id, keep).await {
        Ok(filtered) => filtered,
        Err(err) => {
            fail_batch(client, &[id], err, entries, "filter").await;
            None
        }
    }
}
