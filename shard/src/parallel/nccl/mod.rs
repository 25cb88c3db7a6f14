//! NCCL communicator: collectives between the GPUs of one machine with NVIDIA's NCCL.
//!
//! - **Rendezvous**: rank 0 creates NCCL's unique id and publishes it in the same directory
//!   the CPU communicator meets in (`<uds-path>-comm/`, see [`super::nccl_rendezvous`]); the
//!   other ranks wait for it up to `--rendezvous-timeout`. NCCL then connects the ranks
//!   itself.
//! - **Ordering**: every collective is a candle custom op (`ops.rs`) enqueued on candle's own
//!   device stream, so it runs after the kernels that produced its input and before the ones
//!   that read its output, without any host synchronisation. Only [`Communicator::barrier`]
//!   waits for the stream.
//! - Unlike the CPU communicator, NCCL cannot check that ranks agree: every rank must call the
//!   same collectives in the same order with tensors of the same shape and dtype (for
//!   `all_gather` too: equal parts only; for `broadcast` every rank passes a tensor of the
//!   root's shape). A mismatch hangs or corrupts the result rather than failing.
//! - A communicator of one rank (`--sharded` with `WORLD_SIZE=1`) needs no rendezvous and
//!   really runs every collective, which exercises the NCCL path on a single GPU.

mod ops;
#[cfg(test)]
mod tests;

use super::{nccl_rendezvous, Communicator};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::nccl::result::NcclError;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::cudarc::nccl::sys::ncclResult_t;
use candle_core::{Device, Tensor};
use ops::{Collective, NcclOp};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Bytes of NCCL's unique id (`ncclUniqueId`).
const ID_BYTES: usize = 128;

/// The NCCL handle, movable between threads.
struct SendComm(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not
// overlap; every use goes through the `Mutex` in `NcclCommunicator`. The raw handle inside
// `Comm` is what makes it `!Send`; its stream (`Arc<CudaStream>`) is `Send + Sync`.
unsafe impl Send for SendComm {}

/// Collectives between the GPU shard processes of one machine through NCCL, on candle's
/// device stream.
pub struct NcclCommunicator {
    rank: usize,
    world: usize,
    device: Device,
    /// Collectives of one rank are enqueued one at a time, in the order the model calls them.
    comm: Mutex<SendComm>,
}

impl NcclCommunicator {
    /// Joins the group of `world_size` ranks as rank `rank` on `device` (a CUDA device: the
    /// collectives run on its stream). Rank 0 publishes NCCL's unique id in `rendezvous`
    /// (created if missing); the other ranks wait for it at most `timeout`. Returns once NCCL
    /// has connected every rank.
    pub fn connect(
        rank: usize,
        world_size: usize,
        device: &Device,
        rendezvous: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        if world_size == 0 || rank >= world_size || i32::try_from(world_size).is_err() {
            return Err(ShardError::Communication(format!(
                "rank {rank} is out of range for world size {world_size}"
            )));
        }
        let stream = device.as_cuda_device()?.cuda_stream();
        // ncclCommInitRank uses the calling thread's current device.
        stream.context().bind_to_thread().map_err(|e| {
            ShardError::Communication(format!("rank {rank}: binding the CUDA context: {e}"))
        })?;
        let nccl = |what: &str, e: NcclError| {
            // NCCL refuses two ranks on one GPU with a bare "invalid usage".
            let hint = if e.0 == ncclResult_t::ncclInvalidUsage && world_size > 1 {
                " (NCCL needs a distinct GPU per rank: are two ranks on one GPU?)"
            } else {
                ""
            };
            ShardError::Communication(format!(
                "rank {rank} of {world_size}: {what} failed: {:?}{hint}",
                e.0
            ))
        };
        let id = if rank == 0 {
            let id = Id::new().map_err(|e| nccl("creating the NCCL unique id", e))?;
            if world_size > 1 {
                let path = nccl_rendezvous::publish(rendezvous, world_size, &id_bytes(&id))?;
                tracing::debug!(path = %path.display(), "NCCL unique id published");
            }
            id
        } else {
            let bytes = nccl_rendezvous::wait(rendezvous, rank, world_size, ID_BYTES, timeout)?;
            id_from_bytes(&bytes)?
        };
        tracing::info!(
            rank,
            world_size,
            dir = %rendezvous.display(),
            "connecting the NCCL communicator"
        );
        let comm = Comm::from_rank(stream, rank, world_size, id);
        if rank == 0 && world_size > 1 {
            // Every rank has read the id once the group formed (or failed): nobody needs it.
            nccl_rendezvous::remove(rendezvous);
        }
        let comm = comm.map_err(|e| nccl("ncclCommInitRank", e))?;
        tracing::info!(rank, world_size, "NCCL communicator connected");
        Ok(Self {
            rank,
            world: world_size,
            device: device.clone(),
            comm: Mutex::new(SendComm(comm)),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, SendComm>> {
        self.comm.lock().map_err(|_| {
            ShardError::Communication(format!(
                "rank {}: a collective panicked earlier; the communicator is unusable",
                self.rank
            ))
        })
    }

    /// Enqueues `collective` on `x` (made contiguous first).
    fn run(&self, x: &Tensor, collective: Collective) -> Result<Tensor> {
        if !x.device().same_device(&self.device) {
            return Err(ShardError::Communication(format!(
                "rank {}: the NCCL communicator lives on {:?}, the tensor on {:?}",
                self.rank,
                self.device.location(),
                x.device().location()
            )));
        }
        let x = x.contiguous()?;
        let comm = self.lock()?;
        let op = NcclOp {
            comm: &comm.0,
            collective,
        };
        x.apply_op1_no_bwd(&op).map_err(|e| {
            ShardError::Communication(format!("rank {} of {}: {e}", self.rank, self.world))
        })
    }
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCommunicator")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.device.location())
            .finish_non_exhaustive()
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        if x.elem_count() == 0 {
            return Ok(x.clone());
        }
        self.run(x, Collective::AllReduceSum)
    }

    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor> {
        let dims = x.dims();
        if dim >= dims.len() {
            return Err(ShardError::Communication(format!(
                "all_gather: dimension {dim} out of range for shape {dims:?}"
            )));
        }
        let mut out_dims = dims.to_vec();
        out_dims[dim] *= self.world;
        if x.elem_count() == 0 {
            return Ok(Tensor::zeros(out_dims, x.dtype(), x.device())?);
        }
        // NCCL lays the ranks' parts one after the other: `[world, outer, dim * inner]` for
        // `x` seen as `[outer, dim, inner]`. Moving `world` next to `dim` gives the
        // concatenation along `dim`; with one part per rank on the outermost axis (or one
        // rank) that is already the memory order.
        let outer: usize = dims[..dim].iter().product();
        let gathered = self.run(x, Collective::AllGather)?;
        let out = if outer == 1 || self.world == 1 {
            gathered.reshape(out_dims)?
        } else {
            gathered
                .reshape((self.world, outer, x.elem_count() / outer))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape(out_dims)?
        };
        Ok(out)
    }

    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor> {
        if root >= self.world {
            return Err(ShardError::Communication(format!(
                "broadcast: root {root} is out of range for world size {}",
                self.world
            )));
        }
        if x.elem_count() == 0 {
            return Ok(x.clone());
        }
        self.run(x, Collective::Broadcast { root })
    }

    fn barrier(&self) -> Result<()> {
        let comm = self.lock()?;
        let stream = comm.0.stream();
        let fail = |what: &str, e: String| {
            ShardError::Communication(format!("rank {}: barrier: {what}: {e}", self.rank))
        };
        let mut flag = stream
            .alloc_zeros::<f32>(1)
            .map_err(|e| fail("allocating", e.to_string()))?;
        comm.0
            .all_reduce_in_place(&mut flag, &ReduceOp::Sum)
            .map_err(|e| fail("NCCL all-reduce", format!("{:?}", e.0)))?;
        stream
            .synchronize()
            .map_err(|e| fail("waiting for the stream", e.to_string()))
    }
}

/// The id's bytes as published (`c_char` is `i8` or `u8` depending on the platform).
fn id_bytes(id: &Id) -> Vec<u8> {
    id.internal().iter().map(|&c| c as u8).collect()
}

fn id_from_bytes(bytes: &[u8]) -> Result<Id> {
    let mut internal = [0 as std::ffi::c_char; ID_BYTES];
    if bytes.len() != ID_BYTES {
        return Err(ShardError::Communication(format!(
            "the published NCCL id has {} bytes, expected {ID_BYTES}",
            bytes.len()
        )));
    }
    for (c, &b) in internal.iter_mut().zip(bytes) {
        *c = b as std::ffi::c_char;
    }
    Ok(Id::uninit(internal))
}
