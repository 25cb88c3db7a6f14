//! Kernel launches with programmatic dependent launch (PDL) on Hopper and newer: the kernel
//! may start while the previous one in the stream finishes (it calls `pdl_wait` before it
//! touches anything an earlier kernel wrote, see `kernels/common.cuh`). Decode runs ~10
//! dependent kernels a layer; without PDL each boundary drains the GPU and each linear layer
//! starts its weight stream from cold. cudarc's launch builder has no launch attributes, so
//! this builder calls `cuLaunchKernelEx` itself. `CUDA_PDL=0` turns PDL off; decode graphs
//! are recorded without it ([`without_pdl`]).

use crate::error::Result;
use candle_core::cuda_backend::cudarc::driver::sys;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr, LaunchConfig, SyncOnDrop,
};
use candle_core::cuda_backend::WrapErr;
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::OnceLock;

thread_local! {
    /// Set while a CUDA graph is recorded on this thread (see [`without_pdl`]).
    static RECORDING_WITHOUT_PDL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with PDL off for the kernels it launches on this thread: decode graphs are
/// recorded this way (`CUDA_GRAPH_PDL=1` keeps it). A graph already removes the launch gaps,
/// and on an H100 batch-1 decode through graphs ran 5.98 ms/token without PDL against 6.01
/// with it, while eager batch 64 needs it (7,680 against 7,430 tok/s; docs/gpu-notes.md, run
/// 15).
pub fn without_pdl<R>(f: impl FnOnce() -> R) -> R {
    static KEEP: OnceLock<bool> = OnceLock::new();
    if *KEEP.get_or_init(|| super::env_switch("CUDA_GRAPH_PDL", false)) {
        return f();
    }
    /// Restores the flag however `f` ends.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDING_WITHOUT_PDL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(RECORDING_WITHOUT_PDL.with(|c| c.replace(true)));
    f()
}

/// Whether kernels on `stream`'s device launch with PDL: compute capability 9.0 or newer,
/// `CUDA_PDL` not `0`, and not inside [`without_pdl`]. On an H100 (2026-12-07,
/// docs/gpu-notes.md runs 12 and 15) eager decode with it was never slower, and batch 64
/// 3% faster.
/// The switch and the compute capability are read once: a shard process drives one GPU, and
/// this runs on every launch.
fn pdl_enabled(stream: &CudaStream) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| {
        super::env_switch("CUDA_PDL", true)
            && stream
                .context()
                .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                .is_ok_and(|m| m >= 9)
    });
    on && !RECORDING_WITHOUT_PDL.with(Cell::get)
}

/// One kernel argument, as [`Launch::arg`] takes it.
pub(super) trait KernelArg<'a> {
    /// The argument's bytes in an 8-byte slot (scalars in the low bytes), and for device
    /// memory the guard that orders later use after this launch.
    fn slot(self, stream: &'a CudaStream) -> (u64, Option<SyncOnDrop<'a>>);
}

impl<'a, T> KernelArg<'a> for &'a CudaSlice<T> {
    fn slot(self, stream: &'a CudaStream) -> (u64, Option<SyncOnDrop<'a>>) {
        let (ptr, guard) = self.device_ptr(stream);
        (ptr, Some(guard))
    }
}

impl<'a, T> KernelArg<'a> for &'a CudaView<'_, T> {
    fn slot(self, stream: &'a CudaStream) -> (u64, Option<SyncOnDrop<'a>>) {
        let (ptr, guard) = self.device_ptr(stream);
        (ptr, Some(guard))
    }
}

macro_rules! scalar_arg {
    ($($t:ty => $bits:expr),*) => {$(
        impl<'a> KernelArg<'a> for $t {
            fn slot(self, _: &'a CudaStream) -> (u64, Option<SyncOnDrop<'a>>) {
                (u64::from($bits(self)), None)
            }
        }
    )*};
}
scalar_arg!(i32 => |v: i32| v as u32, u32 => |v: u32| v, f32 => f32::to_bits);

/// A kernel launch being built: arguments in order, then [`Launch::launch`].
pub(super) struct Launch<'a> {
    func: &'a CudaFunction,
    stream: &'a CudaStream,
    pdl: bool,
    slots: Vec<u64>,
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> Launch<'a> {
    /// A launch of `func` on `stream` (the device's `cuda_stream()`).
    pub fn new(stream: &'a CudaStream, func: &'a CudaFunction) -> Self {
        Self {
            func,
            stream,
            pdl: pdl_enabled(stream),
            slots: Vec::with_capacity(16),
            guards: Vec::with_capacity(8),
        }
    }

    /// Whether this launch uses PDL (the kernel may start before the previous one ends).
    pub fn pdl(&self) -> bool {
        self.pdl
    }

    /// Appends an argument: device memory by reference, or an `i32`/`u32`/`f32` by value.
    pub fn arg(&mut self, a: impl KernelArg<'a>) -> &mut Self {
        let (slot, guard) = a.slot(self.stream);
        self.slots.push(slot);
        self.guards.extend(guard);
        self
    }

    /// Queues the kernel.
    ///
    /// # Safety
    /// The arguments must match the kernel's parameters in number, order and type, and the
    /// kernel must stay inside the memory it is given. A kernel launched with PDL must call
    /// `pdl_wait` before it reads or writes memory that earlier kernels write.
    pub unsafe fn launch(mut self, cfg: LaunchConfig) -> Result<()> {
        self.stream.context().bind_to_thread().w()?;
        let mut params: Vec<*mut c_void> = self
            .slots
            .iter_mut()
            .map(|s| (s as *mut u64).cast())
            .collect();
        let mut attr = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            // SAFETY: a plain-data union; zero is a valid value of every member.
            value: unsafe { std::mem::zeroed() },
        };
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(self.pdl),
        };
        // SAFETY: the caller vouches for the arguments (see above); `params` points at
        // `slots`, which outlive the call, and the driver copies them before returning.
        let result = unsafe {
            sys::cuLaunchKernelEx(
                &config,
                self.func.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        drop(self.guards);
        Ok(result.result().w()?)
    }
}
