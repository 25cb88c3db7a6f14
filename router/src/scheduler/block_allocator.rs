//! Paged KV block allocator as an actor: a channel handle plus a task owning the free list.
//! Block 0 is reserved for the liveness prefill; allocations free themselves on `Drop`.

use tokio::sync::{mpsc, oneshot};

/// Blocks and slots held by one request; returned to the pool when dropped.
#[derive(Debug)]
pub struct BlockAllocation {
    pub blocks: Vec<u32>,
    pub slots: Vec<u32>,
    /// Tokens already in the KV cache (prefix caching; always 0 with the simple allocator).
    pub prefix_len: u32,
    allocator: BlockAllocator,
}

impl Drop for BlockAllocation {
    fn drop(&mut self) {
        if !self.blocks.is_empty() {
            self.allocator.free(std::mem::take(&mut self.blocks));
        }
    }
}

enum Command {
    Allocate {
        tokens: u32,
        reply: oneshot::Sender<Option<(Vec<u32>, Vec<u32>)>>,
    },
    Free {
        blocks: Vec<u32>,
    },
    FreeCount {
        reply: oneshot::Sender<usize>,
    },
}

/// Handle to the allocator task; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlockAllocator {
    sender: mpsc::UnboundedSender<Command>,
}

/// The free list (owned by the task).
#[derive(Debug)]
pub struct SimpleAllocator {
    free_blocks: Vec<u32>,
    block_size: u32,
}

impl SimpleAllocator {
    /// `max_batch_total_tokens / block_size` blocks, block 0 held back.
    pub fn new(max_batch_total_tokens: u32, block_size: u32) -> Self {
        let block_size = block_size.max(1);
        let total = max_batch_total_tokens / block_size;
        SimpleAllocator {
            free_blocks: (1..total).collect(),
            block_size,
        }
    }

    /// Blocks for `tokens` slots, or `None` when the pool is short.
    pub fn allocate(&mut self, tokens: u32) -> Option<(Vec<u32>, Vec<u32>)> {
        let required = tokens.div_ceil(self.block_size) as usize;
        if required > self.free_blocks.len() {
            return None;
        }
        let blocks = self
            .free_blocks
            .split_off(self.free_blocks.len() - required);
        let bs = self.block_size;
        let slots = blocks
            .iter()
            .flat_map(|b| (b * bs)..((b + 1) * bs))
            .take(tokens as usize)
            .collect();
        Some((blocks, slots))
    }

    /// Returns blocks to the pool.
    pub fn free(&mut self, blocks: Vec<u32>) {
        self.free_blocks.extend(blocks);
    }

    /// Free blocks now.
    pub fn free_count(&self) -> usize {
        self.free_blocks.len()
    }
}

impl BlockAllocator {
    /// Starts the allocator task (requires a Tokio runtime).
    pub fn new(max_batch_total_tokens: u32, block_size: u32) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut state = SimpleAllocator::new(max_batch_total_tokens, block_size);
        metrics::gauge!("tgi_block_allocator_free_blocks").set(state.free_count() as f64);
        tokio::spawn(async move {
            while let Some(command) = receiver.recv().await {
                match command {
                    Command::Allocate { tokens, reply } => {
                        let _ = reply.send(state.allocate(tokens));
                    }
                    Command::Free { blocks } => state.free(blocks),
                    Command::FreeCount { reply } => {
                        let _ = reply.send(state.free_count());
                    }
                }
                metrics::gauge!("tgi_block_allocator_free_blocks").set(state.free_count() as f64);
            }
        });
        BlockAllocator { sender }
    }

    /// Allocates slots for `tokens` tokens.
    pub async fn allocate(&self, tokens: u32) -> Option<BlockAllocation> {
        let (reply, rx) = oneshot::channel();
        self.sender.send(Command::Allocate { tokens, reply }).ok()?;
        let (blocks, slots) = rx.await.ok()??;
        Some(BlockAllocation {
            blocks,
            slots,
            prefix_len: 0,
            allocator: self.clone(),
        })
    }

    /// Returns blocks to the pool (used by `Drop`).
    pub fn free(&self, blocks: Vec<u32>) {
        let _ = self.sender.send(Command::Free { blocks });
    }

    /// Free blocks now (after every earlier command was handled).
    pub async fn free_count(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.sender.send(Command::FreeCount { reply }).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_zero_is_reserved_and_slots_follow_blocks() {
        let mut a = SimpleAllocator::new(64, 16);
        assert_eq!(a.free_count(), 3);
        let (blocks, slots) = a.allocate(20).unwrap();
        assert_eq!(blocks.len(), 2);
        assert!(!blocks.contains(&0));
        assert_eq!(slots.len(), 20);
        assert_eq!(slots[0], blocks[0] * 16);
        assert_eq!(slots[16], blocks[1] * 16);
        assert_eq!(a.free_count(), 1);
        assert!(a.allocate(17).is_none());
        assert!(a.allocate(16).is_some());
        assert_eq!(a.free_count(), 0);
    }

    #[test]
    fn block_size_one() {
        let mut a = SimpleAllocator::new(10, 1);
        assert_eq!(a.free_count(), 9);
        let (blocks, slots) = a.allocate(4).unwrap();
        assert_eq!(blocks, slots);
        a.free(blocks);
        assert_eq!(a.free_count(), 9);
    }

    #[tokio::test]
    async fn allocation_is_freed_on_drop() {
        let allocator = BlockAllocator::new(16 * 8, 16);
        assert_eq!(allocator.free_count().await, 7);
        let first = allocator.allocate(40).await.unwrap();
        let second = allocator.allocate(64).await.unwrap();
        assert_eq!(allocator.free_count().await, 0);
        assert!(allocator.allocate(1).await.is_none());
        drop(first);
        assert_eq!(allocator.free_count().await, 3);
        drop(second);
        assert_eq!(allocator.free_count().await, 7);
        let all: Vec<u32> = allocator.allocate(7 * 16).await.unwrap().blocks.clone();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (1..8).collect::<Vec<_>>());
    }
}
