//! The NCCL collectives as candle custom ops: `cuda_fwd` enqueues the collective on the
//! communicator's stream, which is candle's own device stream, so it runs in order with the
//! model's kernels and the host never waits.

use candle_core::cuda_backend::cudarc::driver::DeviceRepr;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, NcclType, ReduceOp};
use candle_core::cuda_backend::{CudaDType, CudaStorageSlice};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape};
use half::{bf16, f16};

/// Which collective a [`NcclOp`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collective {
    /// Element-wise sum; same shape out.
    AllReduceSum,
    /// Every rank's contiguous data one after the other; out shape `[world, elements]`.
    AllGather,
    /// Rank `root`'s data; same shape out.
    Broadcast {
        /// Rank whose data every rank gets.
        root: usize,
    },
}

/// One collective over `comm`, applied with `Tensor::apply_op1_no_bwd`.
pub(super) struct NcclOp<'a> {
    pub comm: &'a Comm,
    pub collective: Collective,
}

impl NcclOp<'_> {
    fn run<T>(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)>
    where
        T: CudaDType + NcclType + DeviceRepr,
    {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or(candle_core::Error::RequiresContiguous { op: self.name() })?;
        let src = storage.as_cuda_slice::<T>()?.slice(start..end);
        let world = self.comm.world_size();
        let (out_len, shape) = match self.collective {
            Collective::AllGather => (src.len() * world, Shape::from((world, src.len()))),
            _ => (src.len(), layout.shape().clone()),
        };
        let device = &storage.device;
        // SAFETY: the collective below writes every element of `dst` before any kernel on
        // this stream can read it (NCCL runs on the same stream as the readers).
        let mut dst = unsafe { device.alloc::<T>(out_len) }?;
        let status = match self.collective {
            Collective::AllReduceSum => self.comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
            Collective::AllGather => self.comm.all_gather(&src, &mut dst),
            Collective::Broadcast { root } => {
                let root = i32::try_from(root).map_err(|_| {
                    candle_core::Error::Msg(format!("broadcast root {root} out of range"))
                })?;
                self.comm.broadcast(Some(&src), &mut dst, root)
            }
        };
        status.map_err(|e| {
            candle_core::Error::Msg(format!(
                "NCCL {} on rank {} of {world} failed: {:?}",
                self.name(),
                self.comm.rank(),
                e.0
            ))
        })?;
        Ok((CudaStorage::wrap_cuda_slice(dst, device.clone()), shape))
    }
}

impl CustomOp1 for NcclOp<'_> {
    fn name(&self) -> &'static str {
        match self.collective {
            Collective::AllReduceSum => "nccl-all-reduce-sum",
            Collective::AllGather => "nccl-all-gather",
            Collective::Broadcast { .. } => "nccl-broadcast",
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(candle_core::Error::Msg(format!(
            "{}: NCCL collectives need tensors on the GPU",
            self.name()
        )))
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        match &storage.slice {
            CudaStorageSlice::F32(_) => self.run::<f32>(storage, layout),
            CudaStorageSlice::F16(_) => self.run::<f16>(storage, layout),
            CudaStorageSlice::BF16(_) => self.run::<bf16>(storage, layout),
            _ => Err(candle_core::Error::Msg(format!(
                "{}: NCCL collectives support f32, f16 and bf16 tensors",
                self.name()
            ))),
        }
    }
}
