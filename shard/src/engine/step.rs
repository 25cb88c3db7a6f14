//! One forward of a batch: gather each request's next tokens into a ragged input, run the
//! model against the paged cache, then sample, detokenize, check stopping and plan the next
//! chunk of every request.

use super::finish::Finisher;
use super::logits::{self, RowNeed, RowResult};
use super::request::RequestState;
use super::types::Generation;
use super::Engine;
use crate::error::{Result, ShardError};
use crate::kv::AttentionMetadata;
use crate::models::ForwardInput;
use rayon::prelude::*;
use std::time::Instant;

/// Batches at least this large finish their requests on several threads when some row is
/// sampled on the host (a vocabulary-wide pass each, worth spreading over cores).
const PARALLEL_FINISH: usize = 8;
/// Batches at least this large finish on several threads even when every row was reduced on
/// the device. Finishing a request costs ~3 µs on the dev CPU (tiny model at batch 32, its
/// 260-wide rows sampled on the host included), less than waking a pool: at batch 32 on a
/// 16-core GPU host the parallel finish took ~190 µs a step (docs/gpu-notes.md, run 14).
const PARALLEL_FINISH_REDUCED: usize = 128;

/// What a logits row is used for.
#[derive(Debug, Clone, Copy)]
pub(super) enum RowUse {
    /// Choose request `req`'s next token.
    Sample { req: usize },
    /// Logprob of request `req`'s prompt token at `pos`.
    PromptLogprob { req: usize, pos: usize },
}

/// Timings of a step.
pub(super) struct StepTimes {
    pub forward_ns: u64,
    pub decode_ns: u64,
}

/// A forward queued on the device whose logits rows have not been read back yet.
pub(super) struct Launched {
    uses: Vec<RowUse>,
    rows: logits::PendingRows,
}

impl Engine {
    /// Runs one forward over `requests`, removing those that finish. Returns the generations
    /// this rank reports.
    pub(super) fn step(
        &mut self,
        requests: &mut Vec<RequestState>,
    ) -> Result<(Vec<Generation>, StepTimes)> {
        let start = Instant::now();
        let launched = self.launch(requests)?;
        self.complete(requests, launched, start)
    }

    /// Queues the next forward of `requests` and the reduction of its logits rows, without
    /// waiting for the device (on the CPU the forward itself runs here).
    pub(super) fn launch(&mut self, requests: &[RequestState]) -> Result<Launched> {
        let start = Instant::now();
        let (input, uses) = self.build_input(requests)?;
        let kv = self.kv.as_deref_mut().ok_or(ShardError::NotWarmedUp)?;
        #[cfg(feature = "cuda")]
        let graphed = match self.graphs.as_mut() {
            Some(graphs) => graphs.forward(&self.model, kv, &input)?,
            None => None,
        };
        #[cfg(not(feature = "cuda"))]
        let graphed = None;
        let logits = match graphed {
            Some(logits) => logits,
            None => self.model.forward(&input, kv)?,
        };
        let needs: Vec<RowNeed> = uses
            .iter()
            .map(|u| match *u {
                RowUse::PromptLogprob { req, pos } => requests[req]
                    .all_ids
                    .get(pos)
                    .map_or(RowNeed::Full, |&id| RowNeed::Logprob(id)),
                RowUse::Sample { req } => {
                    let r = &requests[req];
                    if r.top_n_tokens == 0 && r.chooser.is_plain_greedy() {
                        RowNeed::Greedy
                    } else {
                        RowNeed::Full
                    }
                }
            })
            .collect();
        let rows = logits::begin(logits, needs)?;
        tracing::debug!(
            tokens = input.input_ids.len(),
            queued_us = start.elapsed().as_micros() as u64,
            "forward queued"
        );
        Ok(Launched { uses, rows })
    }

    /// Reads `launched`'s rows (waiting for the device) and finishes `requests` with them:
    /// sampling, detokenizing, stopping, and planning the next chunk. `start` is when this
    /// step's RPC began.
    pub(super) fn complete(
        &mut self,
        requests: &mut Vec<RequestState>,
        launched: Launched,
        start: Instant,
    ) -> Result<(Vec<Generation>, StepTimes)> {
        let Launched { uses, rows } = launched;
        let host_sampled = rows.host_sampled();
        let rows = rows.read()?;
        let forward_ns = start.elapsed().as_nanos() as u64;

        let decode_start = Instant::now();
        for r in requests.iter_mut() {
            r.computed += r.next_chunk;
        }
        let mut per_request: Vec<Vec<(RowUse, RowResult)>> = vec![Vec::new(); requests.len()];
        for (row, u) in rows.into_iter().zip(uses) {
            let req = match u {
                RowUse::Sample { req } | RowUse::PromptLogprob { req, .. } => req,
            };
            if let Some(list) = per_request.get_mut(req) {
                list.push((u, row));
            }
        }
        let finisher = Finisher {
            tokenizer: &self.tokenizer,
            max_positions: self.model.config().max_position_embeddings,
        };
        let finish =
            |(r, rows): (&mut RequestState, Vec<(RowUse, RowResult)>)| finisher.finish(r, rows);
        // Sampling on the host and detokenizing are per request: large batches spread them
        // over the host's cores instead of serialising them between two forwards.
        let parallel = requests.len()
            >= if host_sampled {
                PARALLEL_FINISH
            } else {
                PARALLEL_FINISH_REDUCED
            };
        let finished: Vec<Result<Option<(Generation, bool)>>> = if parallel {
            requests
                .par_iter_mut()
                .zip(per_request.into_par_iter())
                .map(finish)
                .collect()
        } else {
            requests.iter_mut().zip(per_request).map(finish).collect()
        };
        let mut generations = Vec::new();
        let mut done_flags = vec![false; requests.len()];
        for (i, f) in finished.into_iter().enumerate() {
            let Some((generation, done)) = f? else {
                continue;
            };
            done_flags[i] = done;
            if generation.request_id % self.world_size as u64 == self.rank as u64 {
                generations.push(generation);
            }
        }
        let finished = done_flags;
        let (kept, done): (Vec<_>, Vec<_>) = std::mem::take(requests)
            .into_iter()
            .zip(finished)
            .partition(|(_, f)| !*f);
        *requests = kept.into_iter().map(|(r, _)| r).collect();
        self.release(done.into_iter().map(|(r, _)| r));
        self.plan_chunks(requests);
        Ok((
            generations,
            StepTimes {
                forward_ns,
                decode_ns: decode_start.elapsed().as_nanos() as u64,
            },
        ))
    }

    fn build_input(&self, requests: &[RequestState]) -> Result<(ForwardInput, Vec<RowUse>)> {
        let cfg = self.model.config();
        let mut meta = AttentionMetadata {
            sliding_window: cfg.sliding_window,
            softmax_scale: 1.0 / (cfg.head_dim as f32).sqrt(),
            ..Default::default()
        };
        let mut input_ids = Vec::new();
        let mut logit_rows = Vec::new();
        let mut uses = Vec::new();
        for (si, r) in requests.iter().enumerate() {
            let (a, b) = (r.computed, r.computed + r.next_chunk);
            if r.next_chunk == 0 || b > r.all_ids.len() {
                return Err(ShardError::invalid_request(
                    r.id,
                    "nothing to compute for this request",
                ));
            }
            for p in a..b {
                if r.prefill_logprobs && p + 1 < r.prompt_len && p + 1 >= r.prompt_logprobs.len() {
                    logit_rows.push(input_ids.len() as u32);
                    uses.push(RowUse::PromptLogprob {
                        req: si,
                        pos: p + 1,
                    });
                }
                input_ids.push(r.all_ids[p]);
                meta.token_slots.push(r.slot(p)?);
                meta.token_seq.push(si as u32);
                meta.token_pos.push(p as u32);
            }
            meta.seq_slots
                .push((0..b).map(|p| r.slot(p)).collect::<Result<Vec<_>>>()?);
            if b == r.all_ids.len() {
                logit_rows.push(input_ids.len() as u32 - 1);
                uses.push(RowUse::Sample { req: si });
            }
        }
        Ok((
            ForwardInput {
                input_ids,
                meta,
                logit_rows,
            },
            uses,
        ))
    }

    /// Decoding requests take 1 token; prefilling ones share what is left of the prefill
    /// budget, oldest first, at least 1 token each (TGI's chunking rule).
    pub(super) fn plan_chunks(&self, requests: &mut [RequestState]) {
        let decoding = requests.iter().filter(|r| !r.is_prefilling()).count();
        let mut budget = self.max_prefill_tokens.saturating_sub(decoding);
        for r in requests.iter_mut() {
            if r.is_prefilling() {
                let remaining = r.prompt_len - r.computed;
                let n = remaining.min(budget).max(1);
                budget = budget.saturating_sub(n);
                r.next_chunk = n;
            } else {
                r.next_chunk = 1;
            }
        }
    }
}
