//! cuBLASLt GEMM for decode-sized batches (`CUDA_LT_GEMM=1`), with the algorithm chosen per
//! shape by timing cuBLASLt's top heuristic candidates once. At 9–64 rows `cublasGemmEx`'s
//! default choice reads the weights at 2.2–3.3 TB/s (docs/gpu-notes.md); the candidates
//! include split-K and stream-K kernels that may keep more of the GPU busy.

use super::{alloc, cuda_device, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
use candle_core::cuda_backend::cudarc::driver::sys::{CUevent_flags, CUstreamCaptureStatus};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use candle_core::{DType, Tensor};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

/// Rows this path takes (fewer go to the GEMV, more are prefill where cuBLAS is at peak).
pub const LT_MAX_M: usize = 64;
/// Workspace for split-K/stream-K candidates (NVIDIA's recommendation for Hopper).
const WORKSPACE: usize = 32 << 20;
/// Heuristic candidates timed per shape.
const CANDIDATES: usize = 8;

/// Whether [`lt_linear`] is on (`CUDA_LT_GEMM`, off by default).
pub fn lt_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::env_switch("CUDA_LT_GEMM", false))
}

/// The descriptors and chosen algorithm of one `(m, n, k, dtype)`.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created in `Plan::new` and destroyed once, here.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.c);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// One stream's handle, workspace and plans.
struct LtState {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: HashMap<(usize, usize, usize, DType), Plan>,
}

// SAFETY: the raw handles are only used under the mutex below, by one thread at a time.
unsafe impl Send for LtState {}

/// States by stream (each stream needs a workspace of its own).
static STATES: Mutex<Option<HashMap<usize, LtState>>> = Mutex::new(None);

fn lt_err(what: &str, e: impl std::fmt::Debug) -> ShardError {
    ShardError::InvalidArgument(format!("cuBLASLt {what}: {e:?}"))
}

fn data_type(dtype: DType) -> Result<sys::cudaDataType> {
    Ok(match dtype {
        DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
        other => return Err(lt_err("dtype", other)),
    })
}

impl Plan {
    /// Column-major view, as in `gemm::cublas_linear`: y^T [n, m] = op_T(W [k, n]) . x^T [k, m].
    fn new(m: usize, n: usize, k: usize, dtype: DType) -> Result<Plan> {
        let t = data_type(dtype)?;
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(|e| lt_err("matmul desc", e))?;
        let trans = 1i32; // CUBLAS_OP_T (cublasOperation_t is a 32-bit enum)
        let layout = |rows: usize, cols: usize, ld: usize| {
            lt::create_matrix_layout(t, rows as u64, cols as u64, ld as i64)
                .map_err(|e| lt_err("layout", e))
        };
        // Build the plan first so that its Drop frees whatever was created on an error.
        let mut plan = Plan {
            desc,
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            c: std::ptr::null_mut(),
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        // SAFETY: `desc` is live; the attribute is a 32-bit cublasOperation_t.
        unsafe {
            lt::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&trans as *const i32).cast(),
                std::mem::size_of::<i32>(),
            )
        }
        .map_err(|e| lt_err("transpose", e))?;
        plan.a = layout(k, n, k)?;
        plan.b = layout(k, m, k)?;
        plan.c = layout(n, m, n)?;
        Ok(plan)
    }

    /// cuBLASLt's candidates for this plan, best first by its heuristic.
    fn candidates(&self, handle: sys::cublasLtHandle_t) -> Result<Vec<sys::cublasLtMatmulAlgo_t>> {
        let pref = lt::create_matmul_pref().map_err(|e| lt_err("preference", e))?;
        let ws = WORKSPACE as u64;
        let mut results: Vec<sys::cublasLtMatmulHeuristicResult_t> = Vec::with_capacity(CANDIDATES);
        let mut count = 0i32;
        // SAFETY: every descriptor is live; `results` has room for CANDIDATES entries, and
        // only the `count` the call reports are read.
        let status = unsafe {
            let set = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
            let found = set.and_then(|()| {
                sys::cublasLtMatmulAlgoGetHeuristic(
                    handle,
                    self.desc,
                    self.a,
                    self.b,
                    self.c,
                    self.c,
                    pref,
                    CANDIDATES as i32,
                    results.as_mut_ptr(),
                    &mut count,
                )
                .result()
            });
            if found.is_ok() {
                results.set_len((count.max(0) as usize).min(CANDIDATES));
            }
            let _ = lt::destroy_matmul_pref(pref);
            found
        };
        status.map_err(|e| lt_err("heuristic", e))?;
        Ok(results
            .into_iter()
            .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
            .map(|r| r.algo)
            .collect())
    }
}

/// Queues `y = x . w^T` with `algo`.
///
/// # Safety
/// The pointers must be live device memory of the plan's shapes and dtype.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    state: &LtState,
    plan: &Plan,
    algo: &sys::cublasLtMatmulAlgo_t,
    stream: &CudaStream,
    w: u64,
    x: u64,
    y: u64,
) -> Result<()> {
    let (alpha, beta) = (1f32, 0f32);
    let (ws, _guard) = state.workspace.device_ptr(stream);
    lt::matmul(
        state.handle,
        plan.desc,
        (&alpha as *const f32).cast(),
        (&beta as *const f32).cast(),
        w as *const c_void,
        plan.a,
        x as *const c_void,
        plan.b,
        y as *const c_void,
        plan.c,
        y as *mut c_void,
        plan.c,
        algo,
        ws as *mut c_void,
        WORKSPACE,
        stream.cu_stream() as *mut _,
    )
    .map_err(|e| lt_err("matmul", e))
}

/// The fastest of `candidates` over 3 timed runs each (after one untimed run).
///
/// # Safety
/// As for [`run`]; the stream must not be capturing.
unsafe fn fastest(
    state: &LtState,
    plan: &Plan,
    candidates: &[sys::cublasLtMatmulAlgo_t],
    stream: &CudaStream,
    (w, x, y): (u64, u64, u64),
) -> Result<sys::cublasLtMatmulAlgo_t> {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut best: Option<(f32, sys::cublasLtMatmulAlgo_t)> = None;
    for algo in candidates {
        // A candidate may refuse these pointers' alignment: it is skipped, not an error.
        let timed = || -> Result<f32> {
            run(state, plan, algo, stream, w, x, y)?;
            let ev = |what| lt_err(what, "event");
            let start = stream.record_event(flags).map_err(|_| ev("start"))?;
            for _ in 0..3 {
                run(state, plan, algo, stream, w, x, y)?;
            }
            let end = stream.record_event(flags).map_err(|_| ev("end"))?;
            end.synchronize().map_err(|_| ev("sync"))?;
            start.elapsed_ms(&end).map_err(|_| ev("elapsed"))
        };
        if let Ok(ms) = timed() {
            if best.is_none_or(|(b, _)| ms < b) {
                best = Some((ms, *algo));
            }
        }
    }
    best.map(|(_, a)| a)
        .ok_or_else(|| lt_err("autotune", "no candidate ran"))
}

/// `x [m, k] . w [n, k]^T` through cuBLASLt, or `None` where this path does not apply
/// (f32, m over [`LT_MAX_M`], no algorithm): the caller then uses cuBLAS.
pub fn lt_linear(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let dev = cuda_device(x, "linear input")?;
    let (m, k) = x.dims2()?;
    let n = w.dim(0)?;
    let dtype = w.dtype();
    if m > LT_MAX_M || data_type(dtype).is_err() || !w.is_contiguous() {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let stream = dev.cuda_stream();
    let capturing = !matches!(
        stream.capture_status(),
        Ok(CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE)
    );
    let mut states = STATES
        .lock()
        .map_err(|_| lt_err("state", "a previous GEMM panicked"))?;
    let states = states.get_or_insert_with(HashMap::new);
    let state = match states.entry(stream.cu_stream() as usize) {
        Entry::Occupied(e) => e.into_mut(),
        // The workspace allocation cannot be recorded in a graph.
        Entry::Vacant(_) if capturing => return Ok(None),
        Entry::Vacant(e) => {
            let handle = lt::create_handle().map_err(|err| lt_err("handle", err))?;
            // SAFETY: the workspace is scratch for cuBLASLt, never read by us.
            let workspace =
                unsafe { stream.alloc::<u8>(WORKSPACE) }.map_err(|err| lt_err("workspace", err))?;
            e.insert(LtState {
                handle,
                workspace,
                plans: HashMap::new(),
            })
        }
    };
    with_float_type!(dtype, T, {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (xv, wv) = (view::<T>(&xs, xl, "x")?, view::<T>(&ws, wl, "weight")?);
        let out = alloc::<T>(&dev, m * n)?;
        let (xp, _gx) = xv.device_ptr(&stream);
        let (wp, _gw) = wv.device_ptr(&stream);
        let (yp, gy) = out.device_ptr(&stream);
        let shape = (m, n, k, dtype);
        if !state.plans.contains_key(&shape) {
            if capturing {
                return Ok(None); // timing candidates needs synchronisation
            }
            let mut plan = Plan::new(m, n, k, dtype)?;
            let candidates = plan.candidates(state.handle)?;
            // SAFETY: live pointers of the checked shapes; the stream is not capturing.
            plan.algo = unsafe { fastest(state, &plan, &candidates, &stream, (wp, xp, yp)) }?;
            state.plans.insert(shape, plan);
        }
        let Some(plan) = state.plans.get(&shape) else {
            return Ok(None);
        };
        // SAFETY: live pointers of the plan's shapes and dtype.
        unsafe { run(state, plan, &plan.algo, &stream, wp, xp, yp) }?;
        drop(gy);
        Ok(Some(wrap(out, &dev, (m, n))))
    })
}
