//! One forward of a batch: gather each request's next tokens into a ragged input, run the
//! model against the paged cache, then sample, detokenize, check stopping and plan the next
//! chunk of every request.

use super::logits::{self, RowNeed, RowResult};
use super::request::RequestState;
use super::stopping::FinishReason;
use super::types::{GeneratedText, Generation, TokenList};
use super::Engine;
use crate::error::{Result, ShardError};
use crate::kv::AttentionMetadata;
use crate::models::ForwardInput;
use crate::sampling::top_n_logprobs;
use std::time::Instant;

/// What a logits row is used for.
#[derive(Debug, Clone, Copy)]
enum RowUse {
    /// Choose request `req`'s next token.
    Sample { req: usize },
    /// Logprob of request `req`'s prompt token at `pos`.
    PromptLogprob { req: usize, pos: usize },
}

/// A chosen token: id, logprob, top-n alternatives.
type Sampled = (u32, f32, Vec<(u32, f32)>);

/// Timings of a step.
pub(super) struct StepTimes {
    pub forward_ns: u64,
    pub decode_ns: u64,
}

impl Engine {
    /// Runs one forward over `requests`, removing those that finish. Returns the generations
    /// this rank reports.
    pub(super) fn step(
        &mut self,
        requests: &mut Vec<RequestState>,
    ) -> Result<(Vec<Generation>, StepTimes)> {
        let start = Instant::now();
        let (input, uses) = self.build_input(requests)?;
        let kv = self.kv.as_deref_mut().ok_or(ShardError::NotWarmedUp)?;
        let logits = self.model.forward(&input, kv)?;
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
        // The forward only queues device work; this is the host's share of it.
        let queued = start.elapsed();
        let rows = logits::read(&logits, &needs)?;
        let forward_ns = start.elapsed().as_nanos() as u64;
        tracing::debug!(
            tokens = input.input_ids.len(),
            queued_us = queued.as_micros() as u64,
            forward_us = forward_ns / 1000,
            "forward"
        );

        let decode_start = Instant::now();
        for r in requests.iter_mut() {
            r.computed += r.next_chunk;
        }
        let mut sampled: Vec<Option<Sampled>> = vec![None; requests.len()];
        for (row, u) in rows.into_iter().zip(uses) {
            match (u, row) {
                (RowUse::PromptLogprob { req, pos }, row) => {
                    let r = &mut requests[req];
                    let lp = match row {
                        RowResult::Logprob(lp) => lp,
                        RowResult::Full(row) => r
                            .all_ids
                            .get(pos)
                            .map_or(f32::NAN, |&id| logits::host_logprob(row, id)),
                        RowResult::Chosen(..) => f32::NAN,
                    };
                    if r.prompt_logprobs.len() == pos {
                        r.prompt_logprobs.push(lp);
                    }
                }
                (RowUse::Sample { req }, RowResult::Chosen(id, lp)) => {
                    sampled[req] = Some((id, lp, Vec::new()));
                }
                (RowUse::Sample { req }, RowResult::Full(mut row)) => {
                    let r = &mut requests[req];
                    let choice = r
                        .chooser
                        .choose(&mut row, &r.all_ids)
                        .map_err(|e| ShardError::invalid_request(r.id, e.to_string()))?;
                    let top = if r.top_n_tokens > 0 {
                        top_n_logprobs(&row, r.top_n_tokens)
                    } else {
                        Vec::new()
                    };
                    sampled[req] = Some((choice.id, choice.logprob, top));
                }
                (RowUse::Sample { req }, RowResult::Logprob(_)) => {
                    return Err(ShardError::invalid_request(
                        requests[req].id,
                        "logits row read back as a prompt logprob",
                    ));
                }
            }
        }

        let mut generations = Vec::new();
        let mut finished = vec![false; requests.len()];
        for (i, s) in sampled.into_iter().enumerate() {
            let Some((id, logprob, top)) = s else {
                continue;
            };
            let (generation, done) = self.advance(&mut requests[i], id, logprob, top)?;
            finished[i] = done;
            if requests[i].id % self.world_size as u64 == self.rank as u64 {
                generations.push(generation);
            }
        }
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

    /// Appends the chosen token, detokenizes it, checks stopping. Returns the generation and
    /// whether the request finished.
    fn advance(
        &self,
        r: &mut RequestState,
        id: u32,
        logprob: f32,
        top: Vec<(u32, f32)>,
    ) -> Result<(Generation, bool)> {
        let prefill_tokens = (r.prefill_logprobs && r.stopping.current_tokens() == 0).then(|| {
            r.prefill_token_list(
                |i| self.token_text(i),
                |i| self.tokenizer.special_ids.contains(&i),
            )
        });
        r.all_ids.push(id);
        let text = r.decoder.next_text(&self.tokenizer, &r.all_ids)?;
        let mut reason = r.stopping.step(id, &text);
        // A full context ends the request like max_new_tokens would, instead of failing it.
        if reason.is_none() && r.all_ids.len() >= self.model.config().max_position_embeddings {
            reason = Some(FinishReason::Length);
        }
        if reason.is_none() && r.all_ids.len() > r.capacity() {
            return Err(ShardError::invalid_request(
                r.id,
                format!(
                    "generation exceeds the {} KV slots reserved for it",
                    r.capacity()
                ),
            ));
        }
        let generated_text = match reason {
            Some(finish_reason) => Some(GeneratedText {
                text: self.tokenizer.decode(&r.all_ids[r.prompt_len..], true)?,
                generated_tokens: r.stopping.current_tokens(),
                finish_reason,
                seed: r.seed,
            }),
            None => None,
        };
        let is_special = |i: u32| self.tokenizer.special_ids.contains(&i);
        let top_tokens = if r.top_n_tokens > 0 {
            vec![TokenList {
                ids: top.iter().map(|t| t.0).collect(),
                logprobs: top.iter().map(|t| t.1).collect(),
                texts: top.iter().map(|t| self.token_text(t.0)).collect(),
                is_special: top.iter().map(|t| is_special(t.0)).collect(),
            }]
        } else {
            Vec::new()
        };
        let generation = Generation {
            request_id: r.id,
            prefill_tokens,
            tokens: TokenList {
                ids: vec![id],
                logprobs: vec![logprob],
                texts: vec![text],
                is_special: vec![is_special(id)],
            },
            generated_text,
            top_tokens,
        };
        r.next_chunk = 1;
        Ok((generation, reason.is_some()))
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
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
