//! Which device a shard runs on: the host CPU by default, the rank's GPU with the `cuda` feature.
//!
//! candle panics (rather than returning an error) when the CUDA driver library cannot be
//! loaded, so the CUDA path first looks for `libcuda.so.1` and then still catches a panic:
//! a CUDA build started on a machine without an NVIDIA driver fails with a clear error.

use crate::error::Result;
use candle_core::Device;

/// The device for shard `rank`: `Device::Cpu` without the `cuda` feature; with it, GPU
/// `rank % visible GPUs`, or an error when no NVIDIA driver or GPU is found.
pub fn select_device(rank: usize) -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        cuda::select(rank)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = rank;
        Ok(Device::Cpu)
    }
}

/// TGI's `Info.device_type` for `device`: `"cpu"`, `"cuda"` or `"metal"`.
pub fn device_type(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

/// Bytes the KV cache may take on `device`, TGI's `--cuda-memory-fraction` rule: free memory
/// minus the part of total memory the fraction keeps back (`free - (1 - fraction) * total`).
///
/// Call it after the warmup forward so its activations are accounted for.
#[cfg(feature = "cuda")]
pub fn kv_budget_bytes_cuda(device: &Device, fraction: f32) -> Result<usize> {
    cuda::kv_budget_bytes(device, fraction)
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use crate::error::ShardError;
    use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    const NO_DRIVER: &str = "CUDA requested but no NVIDIA driver found (libcuda.so.1 is not \
        loadable): install the NVIDIA driver, or run a build without the `cuda` feature";

    pub(super) fn select(rank: usize) -> Result<Device> {
        if !super::library_findable("libcuda.so.1") {
            return Err(ShardError::InvalidArgument(NO_DRIVER.into()));
        }
        let count = guarded(CudaContext::device_count)?.map_err(|e| {
            ShardError::InvalidArgument(format!(
                "CUDA requested but the NVIDIA driver did not initialise: {e}"
            ))
        })?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(ShardError::InvalidArgument(format!(
                "CUDA requested but no GPU is visible (CUDA_VISIBLE_DEVICES={})",
                std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into())
            )));
        }
        let device = guarded(|| Device::new_cuda(rank % count))??;
        if let Device::Cuda(d) = &device {
            // SAFETY: the shard runs all its work (kernels, copies, NCCL) on this device's one
            // stream, so cudarc's per-argument event tracking, which only orders use across
            // streams, protects nothing here and costs an event record on every launch.
            unsafe { d.disable_event_tracking() };
            keep_freed_memory(d)?;
        }
        Ok(device)
    }

    /// Freed memory the pool keeps for reuse (a decode step's activations are far smaller).
    const POOL_KEEP_BYTES: u64 = 2 << 30;

    /// The default memory pool, which candle's stream-ordered allocations come from.
    fn default_pool(d: &candle_core::CudaDevice) -> Result<sys::CUmemoryPool> {
        let ctx = d.cuda_stream().context().clone();
        ctx.bind_to_thread()
            .map_err(|e| ShardError::InvalidArgument(format!("CUDA context: {e}")))?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: a valid device handle and an out pointer to a local.
        unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }
            .result()
            .map_err(|e| ShardError::InvalidArgument(format!("CUDA memory pool: {e}")))?;
        Ok(pool)
    }

    /// Lets the pool keep up to `POOL_KEEP_BYTES` of freed memory across synchronisations.
    /// With the default threshold of 0 every sync (one per step) hands freed memory back to
    /// the driver, and the next step's hundreds of allocations map it again; a bounded
    /// threshold still returns the peak of a one-off large step (for cuBLAS, NCCL).
    fn keep_freed_memory(d: &candle_core::CudaDevice) -> Result<()> {
        let pool = default_pool(d)?;
        let mut threshold = POOL_KEEP_BYTES;
        // SAFETY: the attribute takes a u64 by pointer.
        unsafe {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            )
        }
        .result()
        .map_err(|e| ShardError::InvalidArgument(format!("CUDA memory pool threshold: {e}")))
    }

    /// Runs a driver call, turning the loader's panic into the no-driver error.
    fn guarded<T>(f: impl FnOnce() -> T) -> Result<T> {
        catch_unwind(AssertUnwindSafe(f)).map_err(|_| ShardError::InvalidArgument(NO_DRIVER.into()))
    }

    pub(super) fn kv_budget_bytes(device: &Device, fraction: f32) -> Result<usize> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ShardError::InvalidArgument(format!(
                "--cuda-memory-fraction must be in [0, 1], got {fraction}"
            )));
        }
        // Frees queued on the stream only show up in the free count after a sync, and memory
        // the pool keeps (see keep_freed_memory) only once it is trimmed.
        device.synchronize()?;
        let pool = default_pool(device.as_cuda_device()?)?;
        // SAFETY: trimming a valid pool after a sync releases only unused memory.
        unsafe { sys::cuMemPoolTrimTo(pool, 0) }
            .result()
            .map_err(|e| ShardError::InvalidArgument(format!("CUDA memory pool trim: {e}")))?;
        let stream = device.as_cuda_device()?.cuda_stream();
        let (free, total) = stream.context().mem_get_info().map_err(|e| {
            ShardError::InvalidArgument(format!("cannot read free GPU memory: {e}"))
        })?;
        let reserved = (1.0 - f64::from(fraction)) * total as f64;
        Ok((free as f64 - reserved).max(0.0) as usize)
    }
}

/// Whether the dynamic loader would find `name`: already mapped into this process, or present
/// in `LD_LIBRARY_PATH`, the loader cache or the default library directories.
#[cfg(any(feature = "cuda", test))]
fn library_findable(name: &str) -> bool {
    use std::path::Path;
    let mapped = std::fs::read_to_string("/proc/self/maps")
        .is_ok_and(|maps| maps.lines().any(|l| l.ends_with(&format!("/{name}"))));
    // The loader cache is binary but stores every library name as a plain string.
    let cached = std::fs::read("/etc/ld.so.cache")
        .is_ok_and(|cache| cache.windows(name.len()).any(|w| w == name.as_bytes()));
    let env_dirs = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let default_dirs = [
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/wsl/lib",
    ];
    let in_dirs = env_dirs
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(default_dirs)
        .any(|d| Path::new(d).join(name).exists());
    mapped || cached || in_dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn the_default_build_runs_on_the_cpu() -> Result<()> {
        assert!(matches!(select_device(3)?, Device::Cpu));
        Ok(())
    }

    #[test]
    fn names_device_types_like_tgi() {
        assert_eq!(device_type(&Device::Cpu), "cpu");
    }

    #[test]
    fn finds_loaded_libraries_and_not_missing_ones() {
        // Every Rust test binary on Linux links the C library.
        assert!(library_findable("libc.so.6"));
        assert!(!library_findable("libdoes-not-exist-tgi.so.9"));
    }
}
