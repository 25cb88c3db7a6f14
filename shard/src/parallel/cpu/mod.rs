//! CPU communicator: collectives between the shard processes of one machine over a full mesh
//! of Unix domain sockets.
//!
//! Design, and why:
//! - **Rendezvous through a directory** ([`CpuCommunicator::rendezvous_dir`]: `<BASE>-comm/`
//!   next to the shard sockets, where the launcher already gives every shard the same
//!   `--uds-path <BASE>`). Each rank listens on `rank-<r>.sock` there, connects to the lower
//!   ranks and accepts the higher ones. A path needs no free port, is not reachable from the
//!   network, and is unique per launcher exactly like the shard sockets.
//!   `MASTER_ADDR`/`MASTER_PORT` stay for what needs TCP (multi-node, NCCL's id).
//! - **Unix sockets, full mesh** (at most 28 connections for 8 ranks), rather than shared
//!   memory: a peer that dies closes its sockets in the kernel, so the others see EOF at once,
//!   and blocking reads with `SO_RCVTIMEO` wait without spinning — which matters when the
//!   ranks share 2 cores with the model's own threads. The payloads that matter for latency
//!   (decode: a few KB) cost one `write` per peer and a `read` or two; no `unsafe` is needed.
//!   A mesh rather than a star through rank 0 makes every collective one hop.
//! - **Fixed reduction order**: every rank receives every rank's tensor and sums them itself
//!   in rank order `0, 1, …, N-1`, in f32 (f16/bf16 inputs are widened exactly, and the f32
//!   sum is rounded once to the input dtype at the end). Every rank runs the same
//!   operations on the same values, so results are bit-identical across ranks and runs, and
//!   for f32 equal to `((x0 + x1) + x2) + …`.
//! - **Failure**: every read and write has a timeout ([`CpuCommunicator::DEFAULT_IO_TIMEOUT`],
//!   see [`CpuCommunicator::with_io_timeout`]); EOF or a timeout fails the collective, and the
//!   failing rank shuts all its connections down so that the ranks waiting on it fail at once
//!   too. Headers carry the collective's kind and sequence number, so ranks that call
//!   different collectives get an error naming both, not garbage. After a failure every call
//!   fails immediately: the launcher is expected to tear the shards down.
//! - Large payloads (prefill) travel in lockstep rounds sized from the socket buffer and
//!   agreed at rendezvous (see `transport.rs`), so all ranks can write before they read
//!   without deadlocking.
//!
//! Collectives block the calling thread; each rank must issue the same collectives in the
//! same order (the headers catch it when they do not).
//!
//! ```no_run
//! use std::{path::Path, time::Duration};
//! use text_generation_shard::parallel::{Communicator, CpuCommunicator};
//!
//! # fn main() -> text_generation_shard::Result<()> {
//! // Shard `rank` of `world`, started with `--uds-path /tmp/text-generation-server`.
//! let (rank, world) = (1, 2);
//! let dir = CpuCommunicator::rendezvous_dir(Path::new("/tmp/text-generation-server"));
//! let comm = CpuCommunicator::connect(rank, world, &dir, Duration::from_secs(60))?;
//! let x = candle_core::Tensor::ones(576, candle_core::DType::F32, &candle_core::Device::Cpu)?;
//! let sum = comm.all_reduce_sum(&x)?;
//! # Ok(()) }
//! ```

mod collectives;
mod rendezvous;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use super::Communicator;
use crate::error::{Result, ShardError};
use candle_core::Tensor;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use transport::Mesh;

/// Collectives between the shard processes (or threads) of one machine over Unix sockets.
pub struct CpuCommunicator {
    rank: usize,
    world: usize,
    /// Collectives of one rank run one at a time, in the order the model calls them.
    mesh: Mutex<Mesh>,
}

impl CpuCommunicator {
    /// Default bound on how long a collective waits for a peer's data.
    pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

    /// Joins the group of `world_size` ranks meeting in the directory `rendezvous` (created if
    /// missing) as rank `rank`, waiting at most `timeout` for the others. Every rank must
    /// call this with the same directory and world size; the ranks may be processes or
    /// threads of one process. The error on timeout names the ranks that never showed up.
    pub fn connect(
        rank: usize,
        world_size: usize,
        rendezvous: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        Self::connect_proposing(
            rank,
            world_size,
            rendezvous,
            timeout,
            transport::chunk_size(),
        )
    }

    /// [`Self::connect`] proposing `chunk` bytes as the round size.
    fn connect_proposing(
        rank: usize,
        world_size: usize,
        rendezvous: &Path,
        timeout: Duration,
        chunk: usize,
    ) -> Result<Self> {
        let mesh = rendezvous::connect_mesh(rank, world_size, rendezvous, timeout, chunk)?;
        let mesh = Mesh::new(rank, mesh.streams, mesh.chunk, Self::DEFAULT_IO_TIMEOUT)?;
        tracing::debug!(rank, world_size, dir = %rendezvous.display(), "CPU communicator connected");
        Ok(CpuCommunicator {
            rank,
            world: world_size,
            mesh: Mutex::new(mesh),
        })
    }

    /// Replaces the bound on how long one read or write towards a peer may block
    /// ([`Self::DEFAULT_IO_TIMEOUT`] by default). A peer that stays silent that long fails the
    /// collective.
    pub fn with_io_timeout(self, timeout: Duration) -> Result<Self> {
        self.lock()?.set_io_timeout(timeout)?;
        Ok(self)
    }

    /// The rendezvous directory for shards started with `--uds-path <uds_base>`:
    /// `<uds_base>-comm`.
    pub fn rendezvous_dir(uds_base: &Path) -> PathBuf {
        let mut dir = uds_base.as_os_str().to_owned();
        dir.push("-comm");
        PathBuf::from(dir)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Mesh>> {
        self.mesh.lock().map_err(|_| {
            ShardError::Communication(format!(
                "rank {}: a collective panicked earlier; the communicator is unusable",
                self.rank
            ))
        })
    }

    /// Runs one collective; a failure poisons the mesh and closes it towards every peer.
    fn run<T>(&self, collective: impl FnOnce(&mut Mesh) -> Result<T>) -> Result<T> {
        let mut mesh = self.lock()?;
        let result = collective(&mut mesh);
        if let Err(e) = &result {
            tracing::error!(rank = self.rank, error = %e, "collective failed");
            mesh.fail(e);
        }
        result
    }
}

impl std::fmt::Debug for CpuCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuCommunicator")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl Communicator for CpuCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(x.clone());
        }
        self.run(|mesh| collectives::all_reduce_sum(mesh, x))
    }

    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(x.clone());
        }
        self.run(|mesh| collectives::all_gather(mesh, x, dim))
    }

    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(x.clone());
        }
        self.run(|mesh| collectives::broadcast(mesh, x, root))
    }

    fn barrier(&self) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        self.run(collectives::barrier)
    }
}
