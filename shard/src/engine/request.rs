//! One request's state inside a shard batch: its ids, how many have their K/V cached, where its
//! K/V live, and its sampling / stopping / detokenization state.

use super::detokenize::IncrementalDecoder;
use super::stopping::StoppingCriteria;
use super::types::{NewRequest, TokenList};
use crate::error::{Result, ShardError};
use crate::kv::BLOCK_SIZE;
use crate::sampling::NextTokenChooser;

/// A request being prefilled or decoded.
#[derive(Debug)]
pub struct RequestState {
    /// Router-assigned id.
    pub id: u64,
    /// Prompt + generated ids.
    pub all_ids: Vec<u32>,
    /// Prompt length (after truncation).
    pub prompt_len: usize,
    /// Leading ids whose K/V are in the cache.
    pub computed: usize,
    /// Ids the next forward processes.
    pub next_chunk: usize,
    /// KV blocks (router's or the shard's own).
    pub blocks: Vec<u32>,
    /// Explicit slot per position, when the router sent them.
    pub slots: Vec<u32>,
    /// Blocks the shard allocated itself and must free.
    pub owned_blocks: bool,
    /// Token chooser.
    pub chooser: NextTokenChooser,
    /// Stopping criteria.
    pub stopping: StoppingCriteria,
    /// Incremental detokenizer.
    pub decoder: IncrementalDecoder,
    /// Top-n tokens to report.
    pub top_n_tokens: usize,
    /// Whether prompt logprobs are wanted.
    pub prefill_logprobs: bool,
    /// Prompt logprobs gathered so far (position i = logprob of prompt id i; NaN for 0).
    pub prompt_logprobs: Vec<f32>,
    /// The seed when sampling.
    pub seed: Option<u64>,
}

impl RequestState {
    /// State for `req` whose prompt tokenized to `prompt`.
    pub fn new(
        req: &NewRequest,
        prompt: Vec<u32>,
        chooser: NextTokenChooser,
        stopping: StoppingCriteria,
    ) -> Result<Self> {
        let prompt_len = prompt.len();
        if prompt_len == 0 {
            return Err(ShardError::invalid_request(
                req.id,
                "the input is empty after tokenization",
            ));
        }
        let cached = (req.cache_len as usize).min(prompt_len - 1);
        let remaining = prompt_len - cached;
        let first_chunk = match req.chunk_len {
            Some(0) => return Err(ShardError::invalid_request(req.id, "chunk_len must be > 0")),
            Some(n) => (n as usize).min(remaining),
            None => remaining,
        };
        let seed = chooser.is_sampling().then_some(req.sampling.seed);
        Ok(Self {
            id: req.id,
            all_ids: prompt,
            prompt_len,
            computed: cached,
            next_chunk: first_chunk,
            blocks: req.blocks.clone(),
            slots: req.slots.clone(),
            owned_blocks: false,
            chooser,
            stopping,
            decoder: IncrementalDecoder::new(prompt_len),
            top_n_tokens: req.top_n_tokens as usize,
            prefill_logprobs: req.prefill_logprobs,
            prompt_logprobs: if req.prefill_logprobs {
                vec![f32::NAN]
            } else {
                Vec::new()
            },
            seed,
        })
    }

    /// KV slot of position `pos`.
    pub fn slot(&self, pos: usize) -> Result<u32> {
        if !self.slots.is_empty() {
            return self.slots.get(pos).copied().ok_or_else(|| {
                ShardError::invalid_request(
                    self.id,
                    format!(
                        "no KV slot for position {pos} ({} slots given)",
                        self.slots.len()
                    ),
                )
            });
        }
        let block = self.blocks.get(pos / BLOCK_SIZE).ok_or_else(|| {
            ShardError::invalid_request(
                self.id,
                format!(
                    "no KV block for position {pos} ({} blocks of {BLOCK_SIZE} given)",
                    self.blocks.len()
                ),
            )
        })?;
        Ok(block * BLOCK_SIZE as u32 + (pos % BLOCK_SIZE) as u32)
    }

    /// Token capacity reserved in the KV cache.
    pub fn capacity(&self) -> usize {
        if self.slots.is_empty() {
            self.blocks.len() * BLOCK_SIZE
        } else {
            self.slots.len()
        }
    }

    /// Still computing its prompt.
    pub fn is_prefilling(&self) -> bool {
        self.computed < self.prompt_len
    }

    /// Prompt tokens with the logprobs gathered, decoded one by one.
    pub fn prefill_token_list(
        &self,
        decode: impl Fn(u32) -> String,
        is_special: impl Fn(u32) -> bool,
    ) -> TokenList {
        let ids = self.all_ids[..self.prompt_len].to_vec();
        let mut logprobs = self.prompt_logprobs.clone();
        logprobs.resize(self.prompt_len, f32::NAN);
        TokenList {
            texts: ids.iter().map(|&i| decode(i)).collect(),
            is_special: ids.iter().map(|&i| is_special(i)).collect(),
            logprobs,
            ids,
        }
    }
}
