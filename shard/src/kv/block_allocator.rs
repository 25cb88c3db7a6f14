//! Shard-side block allocation for requests that arrive without `blocks` (warmup, benchmark
//! tools). Block 0 is never handed out: it is reserved for the router's liveness check.

use crate::error::{Result, ShardError};

/// Free list of KV blocks.
#[derive(Debug, Clone)]
pub struct BlockAllocator {
    free: Vec<u32>,
    total: usize,
}

impl BlockAllocator {
    /// All blocks but block 0 free.
    pub fn new(num_blocks: usize) -> Self {
        // Reverse so that pops hand out low ids first (deterministic, easy to read in logs).
        let free = (1..num_blocks as u32).rev().collect();
        Self {
            free,
            total: num_blocks,
        }
    }

    /// Blocks currently free.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Total blocks (block 0 included).
    pub fn total_blocks(&self) -> usize {
        self.total
    }

    /// `n` blocks for request `id`.
    pub fn allocate(&mut self, id: u64, n: usize) -> Result<Vec<u32>> {
        if n > self.free.len() {
            return Err(ShardError::OutOfBlocks {
                id,
                needed: n,
                free: self.free.len(),
            });
        }
        let at = self.free.len() - n;
        let mut blocks = self.free.split_off(at);
        blocks.reverse();
        Ok(blocks)
    }

    /// Returns blocks to the pool.
    pub fn free(&mut self, blocks: &[u32]) {
        self.free.extend(blocks.iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_block_zero_and_reuses_freed_blocks() {
        let mut a = BlockAllocator::new(4);
        assert_eq!(a.free_blocks(), 3);
        let b = a.allocate(1, 2).expect("two");
        assert_eq!(b, vec![1, 2]);
        assert!(matches!(
            a.allocate(2, 2),
            Err(ShardError::OutOfBlocks {
                needed: 2,
                free: 1,
                ..
            })
        ));
        a.free(&b);
        let all = a.allocate(3, 3).expect("three");
        assert!(!all.contains(&0));
        assert_eq!(a.free_blocks(), 0);
    }
}
