//! Repetition and frequency penalties over the ids a request has seen (prompt + generated).
//!
//! TGI passes the batch's padded `all_input_ids_tensor` to these processors, so a short request
//! in a batch also penalises the padding id 0 and its frequency denominator is the batch's
//! longest length. Here both use only the request's own ids, so results do not depend on batch
//! composition; for a batch of one they equal TGI's.

use std::collections::HashMap;

/// Occurrence count of every id seen so far, updated incrementally from the id history.
#[derive(Debug, Default, Clone)]
pub struct TokenCounts {
    counts: HashMap<u32, u32>,
    len: usize,
    last: Option<u32>,
}

impl TokenCounts {
    /// Brings the counts in line with `ids`, the full history (prompt + generated).
    ///
    /// The history is append-only between steps, so only the new tail is counted. A history
    /// that is shorter, or whose last counted id changed, is recounted from scratch.
    pub fn sync(&mut self, ids: &[u32]) {
        let still_prefix =
            ids.len() >= self.len && (self.len == 0 || ids.get(self.len - 1).copied() == self.last);
        if !still_prefix {
            self.counts.clear();
            self.len = 0;
        }
        for &id in &ids[self.len..] {
            *self.counts.entry(id).or_insert(0) += 1;
        }
        self.len = ids.len();
        self.last = ids.last().copied();
    }

    /// Number of ids in the history (with repeats).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id has been seen yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many times `id` occurs in the history.
    pub fn count(&self, id: u32) -> u32 {
        self.counts.get(&id).copied().unwrap_or(0)
    }

    /// Distinct ids with their counts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.counts.iter().map(|(&id, &count)| (id, count))
    }
}

/// TGI's `HeterogeneousRepetitionPenaltyLogitsProcessor` (CTRL): once per distinct seen id,
/// `score < 0 ? score * penalty : score / penalty`. Ids outside the row are ignored.
pub fn apply_repetition_penalty(scores: &mut [f32], seen: &TokenCounts, penalty: f32) {
    for (id, _) in seen.iter() {
        if let Some(score) = scores.get_mut(id as usize) {
            *score = if *score < 0.0 {
                *score * penalty
            } else {
                *score / penalty
            };
        }
    }
}

/// TGI's `HeterogeneousFrequencyPenaltyLogitsProcessor`:
/// `score -= penalty * count / len` for every seen id, `len` being the history length.
pub fn apply_frequency_penalty(scores: &mut [f32], seen: &TokenCounts, penalty: f32) {
    if seen.is_empty() {
        return;
    }
    let len = seen.len() as f32;
    for (id, count) in seen.iter() {
        if let Some(score) = scores.get_mut(id as usize) {
            *score -= count as f32 / len * penalty;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ids: &[u32]) -> TokenCounts {
        let mut c = TokenCounts::default();
        c.sync(ids);
        c
    }

    #[test]
    fn counts_follow_an_append_only_history() {
        let mut c = TokenCounts::default();
        c.sync(&[5, 7, 5]);
        assert_eq!((c.len(), c.count(5), c.count(7), c.count(9)), (3, 2, 1, 0));
        c.sync(&[5, 7, 5, 9]);
        assert_eq!((c.len(), c.count(9), c.count(5)), (4, 1, 2));
        // A different history is recounted, not appended to.
        c.sync(&[1, 1]);
        assert_eq!((c.len(), c.count(1), c.count(5)), (2, 2, 0));
        c.sync(&[1, 2, 3]);
        assert_eq!((c.len(), c.count(1), c.count(2)), (3, 1, 1));
        c.sync(&[]);
        assert!(c.is_empty());
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once_per_id() {
        let mut scores = [2.0, -1.0, 0.5, 3.0, 0.0];
        // id 0 seen twice: still penalised once. id 9 is outside the row.
        apply_repetition_penalty(&mut scores, &counts(&[0, 1, 0, 4, 9]), 2.0);
        assert_eq!(scores, [1.0, -2.0, 0.5, 3.0, 0.0]);
    }

    #[test]
    fn repetition_penalty_below_one_boosts_seen_tokens() {
        let mut scores = [2.0, -1.0];
        apply_repetition_penalty(&mut scores, &counts(&[0, 1]), 0.5);
        assert_eq!(scores, [4.0, -0.5]);
    }

    #[test]
    fn frequency_penalty_subtracts_penalty_times_relative_count() {
        // history of 4 ids: id 1 twice (freq 0.5), id 2 once (0.25), id 7 once (outside).
        let mut scores = [1.0, 1.0, 1.0, 1.0];
        apply_frequency_penalty(&mut scores, &counts(&[1, 2, 1, 7]), 1.0);
        assert_eq!(scores, [1.0, 0.5, 0.75, 1.0]);
        // A negative penalty rewards repetition.
        let mut scores = [0.0, 0.0];
        apply_frequency_penalty(&mut scores, &counts(&[1, 1]), -2.0);
        assert_eq!(scores, [0.0, 2.0]);
        // Nothing seen: nothing changes (no division by zero).
        let mut scores = [0.3];
        apply_frequency_penalty(&mut scores, &TokenCounts::default(), 1.0);
        assert_eq!(scores, [0.3]);
    }
}
