//! Test schedules for paged-attention checks: which sequences get how many new tokens per
//! step, and a block layout that is interleaved across sequences and descending, so no
//! sequence's slots are ever contiguous.

use super::BLOCK_SIZE;

/// Block layout for a schedule of steps, each a list of `(sequence, new tokens)`.
pub(crate) struct ScheduleLayout {
    /// Number of sequences.
    pub nseq: usize,
    /// Total tokens of each sequence over all steps.
    pub lens: Vec<usize>,
    /// Blocks needed (block 0 included).
    pub num_blocks: usize,
}

impl ScheduleLayout {
    pub(crate) fn new(steps: &[&[(usize, usize)]]) -> Self {
        let all = || steps.iter().flat_map(|s| s.iter());
        let nseq = all().map(|&(s, _)| s + 1).max().unwrap_or(0);
        let mut lens = vec![0usize; nseq];
        all().for_each(|&(s, n)| lens[s] += n);
        let per_seq = lens
            .iter()
            .map(|l| l.div_ceil(BLOCK_SIZE))
            .max()
            .unwrap_or(0);
        Self {
            nseq,
            lens,
            num_blocks: nseq * per_seq + 1,
        }
    }

    /// Slot of position `p` of sequence `s`: its block j sits at `num_blocks - 1 - (j * nseq + s)`.
    pub(crate) fn slot(&self, s: usize, p: usize) -> u32 {
        let block = self.num_blocks - 1 - ((p / BLOCK_SIZE) * self.nseq + s);
        (block * BLOCK_SIZE + p % BLOCK_SIZE) as u32
    }
}
