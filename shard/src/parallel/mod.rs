//! Tensor parallelism: the communicator seam and the parallel linear/embedding layers.
//!
//! Model files only ever see [`Communicator`]; backends (no-op for one shard, CPU across
//! processes, NCCL on GPU with the `nccl` feature) plug in behind it, chosen by
//! [`Backend::select`].

pub mod cpu;
mod linear;
#[cfg(feature = "nccl")]
mod nccl;
pub mod nccl_rendezvous;
mod single;

pub use cpu::CpuCommunicator;
pub use linear::{ColumnParallelLinear, ParallelLmHead, RowParallelLinear, VocabParallelEmbedding};
#[cfg(feature = "nccl")]
pub use nccl::NcclCommunicator;
pub use single::SingleProcess;

use crate::error::{Result, ShardError};
use candle_core::Tensor;
use std::sync::Arc;

/// Collective operations between the ranks of one model.
///
/// The parallel layers call the collectives whatever the world size (weights stay whole for
/// one rank), so a backend of one rank either returns its input ([`SingleProcess`]) or runs
/// the real collective (NCCL with `--sharded` and `WORLD_SIZE=1`).
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

/// Which [`Communicator`] a shard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// [`SingleProcess`]: one unsharded rank, every collective is the identity.
    Single,
    /// [`CpuCommunicator`]: ranks on the host CPU, over Unix sockets.
    Cpu,
    /// `NcclCommunicator`: ranks on GPUs, through NCCL (needs the `nccl` feature).
    Nccl,
}

impl Backend {
    /// The backend for a shard on a CUDA device (`on_cuda`) or the CPU, started with
    /// `--sharded` or not, in a group of `world_size` ranks (1 unless `--sharded`), in a
    /// build with (`nccl_built`) or without the `nccl` feature:
    /// - CUDA and `--sharded`: NCCL, for one rank too (that runs the NCCL collectives on a
    ///   single GPU); without the `nccl` feature an error for several ranks, and one
    ///   unsharded rank for one.
    /// - CPU: the CPU communicator for several ranks, else one unsharded rank.
    pub fn select(
        on_cuda: bool,
        sharded: bool,
        world_size: usize,
        nccl_built: bool,
    ) -> Result<Self> {
        match (on_cuda, sharded || world_size > 1) {
            (true, true) if nccl_built => Ok(Backend::Nccl),
            (true, true) if world_size > 1 => Err(ShardError::InvalidArgument(format!(
                "WORLD_SIZE={world_size} on CUDA needs the NCCL communicator, which this \
                 binary lacks: build text-generation-shard with `--features nccl`"
            ))),
            (false, true) if world_size > 1 => Ok(Backend::Cpu),
            _ => Ok(Backend::Single),
        }
    }

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Single => "single-process",
            Backend::Cpu => "cpu",
            Backend::Nccl => "nccl",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_backend_from_device_flags_and_build() -> Result<()> {
        // (on_cuda, sharded, world, nccl_built) -> backend
        let cases = [
            ((false, false, 1, false), Backend::Single),
            ((false, true, 1, false), Backend::Single),
            ((false, true, 2, false), Backend::Cpu),
            ((true, false, 1, false), Backend::Single),
            ((true, false, 1, true), Backend::Single),
            ((true, true, 1, true), Backend::Nccl),
            ((true, true, 4, true), Backend::Nccl),
            ((true, true, 1, false), Backend::Single),
        ];
        for ((cuda, sharded, world, nccl), want) in cases {
            assert_eq!(
                Backend::select(cuda, sharded, world, nccl)?,
                want,
                "{cuda} {sharded} {world} {nccl}"
            );
        }
        Ok(())
    }

    #[test]
    fn several_gpu_ranks_without_nccl_fail_with_the_fix() {
        let err = Backend::select(true, true, 2, false);
        assert!(
            matches!(&err, Err(ShardError::InvalidArgument(m)) if m.contains("--features nccl")),
            "{err:?}"
        );
    }

    #[test]
    fn one_rank_keeps_the_weights_whole() {
        assert_eq!(Split::along(0, &SingleProcess), Split::Full);
    }
}
