//! The request queue as an actor: FIFO admission under prefill and KV budgets (§6.3).

use super::block_allocator::{BlockAllocation, BlockAllocator};
use crate::client::sharded::text_input;
use crate::error::RouterError;
use crate::infer::types::{InferStreamResponse, ValidGenerateRequest, ValidGrammar};
use nohash_hasher::IntMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use text_generation_proto::v3::{
    Batch, GrammarType, NextTokenChooserParameters, Request, StoppingCriteriaParameters,
};
use tokio::sync::{mpsc, oneshot};

/// Sender half of a request's response stream.
pub type ResponseSender = mpsc::UnboundedSender<Result<InferStreamResponse, RouterError>>;

/// A queued or running request.
#[derive(Debug)]
pub struct Entry {
    pub request: Arc<ValidGenerateRequest>,
    pub response_tx: ResponseSender,
    /// When it entered the queue.
    pub queue_time: Instant,
    /// When its batch started.
    pub batch_time: Option<Instant>,
    /// KV blocks, freed when the entry is dropped.
    pub block_allocation: Option<BlockAllocation>,
}

/// Entries by router id plus the batch to send.
pub type NextBatch = (IntMap<u64, Entry>, Batch);

/// Static queue settings from the shard's `Info`.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub requires_padding: bool,
    pub block_size: u32,
    pub speculate: u32,
    pub max_batch_total_tokens: u32,
    pub support_chunking: bool,
}

enum Command {
    Append(Box<Entry>),
    NextBatch {
        min_size: Option<usize>,
        max_size: Option<usize>,
        prefill_token_budget: u32,
        token_budget: u32,
        reply: oneshot::Sender<Option<NextBatch>>,
    },
    Len(oneshot::Sender<usize>),
}

/// Handle to the queue task.
#[derive(Clone, Debug)]
pub struct Queue {
    sender: mpsc::UnboundedSender<Command>,
}

impl Queue {
    /// Starts the queue task (and the block allocator for paged models).
    pub fn new(config: QueueConfig) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut state = State::new(config);
        tokio::spawn(async move {
            while let Some(command) = receiver.recv().await {
                match command {
                    Command::Append(entry) => {
                        state.append(*entry);
                        metrics::gauge!("tgi_queue_size").set(state.entries.len() as f64);
                    }
                    Command::NextBatch {
                        min_size,
                        max_size,
                        prefill_token_budget,
                        token_budget,
                        reply,
                    } => {
                        let next = state
                            .next_batch(min_size, max_size, prefill_token_budget, token_budget)
                            .await;
                        let _ = reply.send(next);
                        metrics::gauge!("tgi_queue_size").set(state.entries.len() as f64);
                    }
                    Command::Len(reply) => {
                        let _ = reply.send(state.entries.len());
                    }
                }
            }
        });
        Queue { sender }
    }

    /// Adds a request at the back.
    pub fn append(&self, entry: Entry) {
        let _ = self.sender.send(Command::Append(Box::new(entry)));
    }

    /// Takes the next batch that fits the budgets, if any.
    pub async fn next_batch(
        &self,
        min_size: Option<usize>,
        max_size: Option<usize>,
        prefill_token_budget: u32,
        token_budget: u32,
    ) -> Option<NextBatch> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Command::NextBatch {
                min_size,
                max_size,
                prefill_token_budget,
                token_budget,
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Requests waiting.
    pub async fn len(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.sender.send(Command::Len(reply)).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// True when nothing waits.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

/// Queue contents and id counters (owned by the task).
#[derive(Debug)]
struct State {
    entries: VecDeque<(u64, Entry)>,
    next_id: u64,
    next_batch_id: u64,
    config: QueueConfig,
    block_allocator: Option<BlockAllocator>,
}

impl State {
    fn new(config: QueueConfig) -> Self {
        let block_allocator = (!config.requires_padding)
            .then(|| BlockAllocator::new(config.max_batch_total_tokens, config.block_size));
        State {
            entries: VecDeque::with_capacity(128),
            next_id: 0,
            next_batch_id: 0,
            config,
            block_allocator,
        }
    }

    fn append(&mut self, entry: Entry) {
        self.entries.push_back((self.next_id, entry));
        self.next_id += 1;
    }

    async fn next_batch(
        &mut self,
        min_size: Option<usize>,
        max_size: Option<usize>,
        prefill_token_budget: u32,
        token_budget: u32,
    ) -> Option<NextBatch> {
        if self.entries.is_empty()
            || min_size.is_some_and(|min| self.entries.len() < min)
            || max_size == Some(0)
            || prefill_token_budget == 0
            || token_budget == 0
        {
            return None;
        }
        let block_size = self.config.block_size.max(1);
        let prefill_token_budget = prefill_token_budget.div_ceil(block_size) * block_size;
        let speculate = self.config.speculate;

        let mut batch: Vec<(u64, Entry, Option<u32>)> = Vec::new();
        let mut max_input_length = 0u32;
        let mut prefill_tokens = 0u32;
        let mut decode_tokens = 0u32;
        let mut max_blocks = 0u32;

        while let Some((id, mut entry)) = self.entries.pop_front() {
            if entry.response_tx.is_closed() {
                metrics::counter!("tgi_request_failure", "err" => "dropped").increment(1);
                tracing::debug!("dropping request {id}: client went away");
                continue;
            }
            let input_length = entry.request.input_length;
            let max_new_tokens = entry.request.stopping_parameters.max_new_tokens;
            match &self.block_allocator {
                None => {
                    max_input_length = max_input_length.max(input_length);
                    let prefill = max_input_length * (batch.len() as u32 + 1);
                    let decode = decode_tokens + max_new_tokens;
                    if prefill > prefill_token_budget || prefill + decode + speculate > token_budget
                    {
                        self.entries.push_front((id, entry));
                        break;
                    }
                    prefill_tokens = prefill;
                    decode_tokens = decode;
                }
                Some(allocator) => {
                    let tokens = input_length + max_new_tokens + speculate;
                    let tokens = tokens.saturating_sub(1).max(1);
                    let capacity = self.config.max_batch_total_tokens / block_size;
                    let capacity = capacity.saturating_sub(1) * block_size;
                    if tokens > capacity {
                        // It would wait forever: fail it instead of blocking the queue.
                        metrics::counter!("tgi_request_failure", "err" => "generation")
                            .increment(1);
                        let _ = entry.response_tx.send(Err(RouterError::Generation(format!(
                            "Server error: the request needs {tokens} KV cache slots but the cache holds {capacity}"
                        ))));
                        continue;
                    }
                    let Some(allocation) = allocator.allocate(tokens).await else {
                        self.entries.push_front((id, entry));
                        break;
                    };
                    let postfix_len = input_length.saturating_sub(allocation.prefix_len);
                    max_blocks = max_blocks.max(allocation.blocks.len() as u32);
                    entry.block_allocation = Some(allocation);
                    if prefill_tokens + postfix_len > prefill_token_budget {
                        if self.config.support_chunking {
                            let remaining = prefill_token_budget - prefill_tokens;
                            if remaining > 0 {
                                prefill_tokens += remaining;
                                decode_tokens += max_new_tokens + speculate;
                                batch.push((id, entry, Some(remaining)));
                            } else {
                                entry.block_allocation = None;
                                self.entries.push_front((id, entry));
                            }
                        } else {
                            entry.block_allocation = None;
                            self.entries.push_front((id, entry));
                        }
                        break;
                    }
                    prefill_tokens += postfix_len;
                    decode_tokens += max_new_tokens + speculate;
                }
            }
            batch.push((id, entry, None));
            if max_size.is_some_and(|max| batch.len() >= max) {
                break;
            }
        }

        if batch.is_empty() || min_size.is_some_and(|min| batch.len() < min) {
            // Put everything back in order; allocations are released by the entries' drop.
            for (id, mut entry, _) in batch.into_iter().rev() {
                entry.block_allocation = None;
                self.entries.push_front((id, entry));
            }
            return None;
        }

        let now = Instant::now();
        let mut entries = IntMap::default();
        let mut requests = Vec::with_capacity(batch.len());
        for (id, mut entry, chunk_len) in batch {
            entry.batch_time = Some(now);
            requests.push(to_proto(id, &entry, chunk_len));
            entries.insert(id, entry);
        }
        metrics::histogram!("tgi_batch_next_size").record(requests.len() as f64);
        let size = requests.len() as u32;
        let batch = Batch {
            id: self.next_batch_id,
            requests,
            size,
            max_tokens: prefill_tokens + decode_tokens,
            max_blocks,
        };
        self.next_batch_id += 1;
        Some((entries, batch))
    }
}

/// Builds the wire request of an entry.
fn to_proto(id: u64, entry: &Entry, chunk_len: Option<u32>) -> Request {
    let r = &entry.request;
    let p = &r.parameters;
    let (grammar, grammar_type) = match &p.grammar {
        None => (String::new(), GrammarType::None),
        Some(ValidGrammar::Json(s)) => (s.clone(), GrammarType::Json),
        Some(ValidGrammar::Regex(s)) => (s.clone(), GrammarType::Regex),
    };
    let (blocks, slots, cache_len) = match &entry.block_allocation {
        Some(a) => (a.blocks.clone(), a.slots.clone(), a.prefix_len),
        None => (vec![], vec![], 0),
    };
    Request {
        id,
        inputs: r.inputs.clone(),
        input_chunks: Some(text_input(&r.inputs)),
        truncate: r.truncate,
        add_special_tokens: r.add_special_tokens,
        parameters: Some(NextTokenChooserParameters {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            typical_p: p.typical_p,
            do_sample: p.do_sample,
            seed: p.seed,
            repetition_penalty: p.repetition_penalty,
            frequency_penalty: p.frequency_penalty,
            watermark: p.watermark,
            grammar,
            grammar_type: grammar_type.into(),
        }),
        stopping_parameters: Some(StoppingCriteriaParameters {
            max_new_tokens: r.stopping_parameters.max_new_tokens,
            stop_sequences: r.stopping_parameters.stop_sequences.clone(),
            ignore_eos_token: r.stopping_parameters.ignore_eos_token,
        }),
        prefill_logprobs: r.decoder_input_details,
        top_n_tokens: r.top_n_tokens,
        blocks,
        slots,
        adapter_id: r.adapter_id.clone(),
        cache_len,
        chunk_len,
    }
}

#[cfg(test)]
mod tests;
