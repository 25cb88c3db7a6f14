//! Per-forward attention metadata for a ragged batch: where each new token's K/V go and which
//! cached slots each sequence reads.

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
}
