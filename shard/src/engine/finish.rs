//! The host's share of a step for one request: prompt logprobs and sampling from its logits
//! rows, then appending the token, detokenizing and checking stopping. Requests are
//! independent here, so a step can finish them on several threads.

use super::logits::{self, RowResult};
use super::request::RequestState;
use super::step::RowUse;
use super::stopping::FinishReason;
use super::types::{GeneratedText, Generation, TokenList};
use crate::error::{Result, ShardError};
use crate::sampling::top_n_logprobs;
use crate::weights::tokenizer::TokenizerBundle;

/// What finishing a request needs from the engine (shared, read-only).
pub(super) struct Finisher<'a> {
    /// The model's tokenizer.
    pub tokenizer: &'a TokenizerBundle,
    /// The model's `max_position_embeddings`.
    pub max_positions: usize,
}

impl Finisher<'_> {
    /// Applies request `r`'s logits `rows`; returns its generation and whether it finished,
    /// or `None` when this step sampled no token for it (a prompt chunk before the last).
    pub fn finish(
        &self,
        r: &mut RequestState,
        rows: Vec<(RowUse, RowResult)>,
    ) -> Result<Option<(Generation, bool)>> {
        let mut sampled = None;
        for (u, row) in rows {
            match (u, row) {
                (RowUse::PromptLogprob { pos, .. }, row) => {
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
                (RowUse::Sample { .. }, RowResult::Chosen(id, lp)) => {
                    sampled = Some((id, lp, Vec::new()));
                }
                (RowUse::Sample { .. }, RowResult::Full(mut row)) => {
                    let choice = r
                        .chooser
                        .choose(&mut row, &r.all_ids)
                        .map_err(|e| ShardError::invalid_request(r.id, e.to_string()))?;
                    let top = if r.top_n_tokens > 0 {
                        top_n_logprobs(&row, r.top_n_tokens)
                    } else {
                        Vec::new()
                    };
                    sampled = Some((choice.id, choice.logprob, top));
                }
                (RowUse::Sample { .. }, RowResult::Logprob(_)) => {
                    return Err(ShardError::invalid_request(
                        r.id,
                        "logits row read back as a prompt logprob",
                    ));
                }
            }
        }
        match sampled {
            Some((id, logprob, top)) => self.advance(r, id, logprob, top).map(Some),
            None => Ok(None),
        }
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
        let text = r.decoder.next_text(self.tokenizer, &r.all_ids)?;
        let mut reason = r.stopping.step(id, &text);
        // A full context ends the request like max_new_tokens would, instead of failing it.
        if reason.is_none() && r.all_ids.len() >= self.max_positions {
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
}
