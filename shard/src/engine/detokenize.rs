//! Incremental detokenization with prefix/read offsets (TGI's `decode_token`): each streamed
//! piece is valid UTF-8, and a token that only completes a multi-byte character later yields
//! "" until it does.

use crate::error::Result;
use crate::weights::tokenizer::TokenizerBundle;

/// Offsets into a request's ids for the next incremental decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementalDecoder {
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    /// Starts after a prompt of `prompt_len` ids, with up to 5 prompt ids of left context
    /// (so a first token's leading space decodes as it would mid-text).
    pub fn new(prompt_len: usize) -> Self {
        Self {
            prefix_offset: prompt_len.saturating_sub(5),
            read_offset: prompt_len,
        }
    }

    /// Text added by the ids after `read_offset`, or "" while it is an incomplete character.
    pub fn next_text(&mut self, tok: &TokenizerBundle, all_ids: &[u32]) -> Result<String> {
        let prefix_offset = self.prefix_offset.min(all_ids.len());
        let read_offset = self.read_offset.clamp(prefix_offset, all_ids.len());
        let prefix_text = tok.decode(&all_ids[prefix_offset..read_offset], false)?;
        let new_text = tok.decode(&all_ids[prefix_offset..], false)?;
        if new_text.len() > prefix_text.len() && !new_text.ends_with('\u{FFFD}') {
            if let Some(piece) = new_text.get(prefix_text.len()..) {
                self.prefix_offset = read_offset;
                self.read_offset = all_ids.len();
                return Ok(piece.to_string());
            }
        }
        Ok(String::new())
    }
}
