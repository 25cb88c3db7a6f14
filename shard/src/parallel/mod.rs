//! Tensor parallelism: the communicator seam and the parallel linear/embedding layers.
//!
//! Model files only ever see [`Communicator`]; backends (no-op for one shard, CPU across
//! processes, NCCL on GPU) plug in behind it.

pub mod cpu;
mod linear;
mod single;

pub use cpu::CpuCommunicator;
pub use linear::{ColumnParallelLinear, ParallelLmHead, RowParallelLinear, VocabParallelEmbedding};
pub use single::SingleProcess;

use crate::error::Result;
use candle_core::Tensor;
use std::sync::Arc;

/// Collective operations between the ranks of one model.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process' rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Element-wise sum over all ranks; every rank gets the result.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor>;
    /// Concatenation of every rank's `x` along `dim`, in rank order.
    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor>;
    /// Rank `root`'s `x` on every rank.
    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor>;
    /// Waits until every rank reached this point.
    fn barrier(&self) -> Result<()>;
}

/// Shared handle to a communicator.
pub type Comm = Arc<dyn Communicator>;

/// How one rank takes its part of a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The whole tensor (replicated).
    Full,
    /// Slice `rank` of `world` equal parts along `dim`.
    Dim {
        /// Dimension to split.
        dim: usize,
        /// Part index.
        rank: usize,
        /// Number of parts.
        world: usize,
    },
}

impl Split {
    /// `dim` split for the communicator's rank (Full when there is one rank).
    pub fn along(dim: usize, comm: &dyn Communicator) -> Self {
        if comm.world_size() == 1 {
            Split::Full
        } else {
            Split::Dim {
                dim,
                rank: comm.rank(),
                world: comm.world_size(),
            }
        }
    }
}
