//! Per-forward attention metadata for a ragged batch: where each new token's K/V go and which
//! cached slots each sequence reads.

use crate::error::{Result, ShardError};

/// Built once per forward, shared by every layer.
#[derive(Debug, Clone, Default)]
pub struct AttentionMetadata {
    /// Slot (block * BLOCK_SIZE + offset) receiving each new token's K/V.
    pub token_slots: Vec<u32>,
    /// Sequence index of each new token.
    pub token_seq: Vec<u32>,
    /// Absolute position of each new token in its sequence.
    pub token_pos: Vec<u32>,
    /// For each sequence, the slot of every position up to the last new token.
    pub seq_slots: Vec<Vec<u32>>,
    /// Attend only to the last `w` positions (the current one included).
    pub sliding_window: Option<usize>,
    /// Softmax scale, usually `1/sqrt(head_dim)`.
    pub softmax_scale: f32,
}

impl AttentionMetadata {
    /// Number of new tokens.
    pub fn num_tokens(&self) -> usize {
        self.token_slots.len()
    }

    /// First position token `t` attends to.
    pub fn window_start(&self, pos: usize) -> usize {
        match self.sliding_window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }

    /// Checks that every index is in range for a cache of `slots_total` slots: each new
    /// token's slot, sequence and position, and every slot a sequence reads.
    pub fn validate(&self, slots_total: usize) -> Result<()> {
        let t = self.num_tokens();
        let bad = |m: String| Err(ShardError::InvalidArgument(m));
        if self.token_seq.len() != t || self.token_pos.len() != t {
            return bad(format!(
                "attention metadata: {t} slots but {} sequence indices and {} positions",
                self.token_seq.len(),
                self.token_pos.len()
            ));
        }
        if let Some(&s) = self
            .token_slots
            .iter()
            .find(|&&s| s as usize >= slots_total)
        {
            return bad(format!(
                "slot {s} is outside the KV cache ({slots_total} slots)"
            ));
        }
        for (&s, &p) in self.token_seq.iter().zip(&self.token_pos) {
            match self.seq_slots.get(s as usize) {
                Some(slots) if slots.len() > p as usize => {}
                _ => return bad(format!("no slots for position {p} of sequence {s}")),
            }
        }
        for (seq, slots) in self.seq_slots.iter().enumerate() {
            if let Some(&s) = slots.iter().find(|&&s| s as usize >= slots_total) {
                return bad(format!(
                    "sequence {seq} reads slot {s}, outside the KV cache ({slots_total} slots)"
                ));
            }
        }
        Ok(())
    }
}

/// What a per-forward plan was built from. The decoder calls the cache layer by layer with the
/// same metadata, so a plan built on the first layer serves the others while this matches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForwardKey {
    token_slots: Vec<u32>,
    token_seq: Vec<u32>,
    token_pos: Vec<u32>,
    seq_lens: Vec<usize>,
    window: Option<usize>,
    heads: usize,
}

impl ForwardKey {
    pub(crate) fn of(meta: &AttentionMetadata, heads: usize) -> Self {
        Self {
            token_slots: meta.token_slots.clone(),
            token_seq: meta.token_seq.clone(),
            token_pos: meta.token_pos.clone(),
            seq_lens: meta.seq_slots.iter().map(Vec::len).collect(),
            window: meta.sliding_window,
            heads,
        }
    }

    pub(crate) fn matches(&self, meta: &AttentionMetadata, heads: usize) -> bool {
        self.heads == heads
            && self.window == meta.sliding_window
            && self.token_slots == meta.token_slots
            && self.token_seq == meta.token_seq
            && self.token_pos == meta.token_pos
            && self
                .seq_lens
                .iter()
                .copied()
                .eq(meta.seq_slots.iter().map(Vec::len))
    }
}

/// Layer order of the calls into a cache: a layer after the previous one continues the same
/// forward; anything else starts a new one.
#[derive(Debug, Default)]
pub(crate) struct LayerOrder(Option<usize>);

impl LayerOrder {
    /// Records `layer`; true when it continues the forward of the previous call.
    pub(crate) fn continues(&mut self, layer: usize) -> bool {
        let same = self.0.is_some_and(|l| layer > l);
        self.0 = Some(layer);
        same
    }
}
