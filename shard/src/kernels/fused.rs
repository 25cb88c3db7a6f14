//! Launchers of `kernels/fused.cu`: residual add + RMSNorm, SiLU·mul, rotary + K/V cache write.

use super::launch::Launch;
use super::{alloc, cuda_device, ptx, suffix, vector_width, view, with_float_type, wrap};
use crate::error::{Result, ShardError};
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::{DType, Tensor};

fn bad(msg: String) -> ShardError {
    ShardError::InvalidArgument(msg)
}

/// The name of kernel `base` of `fused.cu` for `dtype`, its 16-byte-load variant if
/// `vectorised`.
fn kernel_name(base: &str, vectorised: bool, dtype: DType) -> Result<String> {
    let variant = if vectorised { "_vec" } else { "" };
    Ok(format!("{base}{variant}_{}", suffix(dtype)?))
}

fn launch_cfg(blocks: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `(x + h, rms_norm(x + h) * weight)` for `[rows, cols]` `x`/`h` in one kernel; the sum is
/// rounded to the dtype before it is normalised, as an unfused add then norm would.
pub fn add_rms_norm(x: &Tensor, h: &Tensor, weight: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let dev = cuda_device(x, "add_rms_norm input")?;
    let (rows, cols) = x.dims2()?;
    if h.dims2()? != (rows, cols) || weight.dims1()? != cols {
        return Err(bad(format!(
            "add_rms_norm shapes x {:?} h {:?} weight {:?}",
            x.dims(),
            h.dims(),
            weight.dims()
        )));
    }
    let dtype = x.dtype();
    if h.dtype() != dtype || weight.dtype() != dtype {
        return Err(bad(
            "add_rms_norm needs one dtype for x, h and weight".into()
        ));
    }
    if rows == 0 {
        return Ok((x.clone(), x.clone()));
    }
    let vec = vector_width(dtype, cols, &[x, h, weight]);
    let name = kernel_name("add_rms_norm", vec.is_some(), dtype)?;
    let func = dev.get_or_load_custom_func(&name, "fused", ptx::FUSED)?;
    with_float_type!(dtype, T, {
        let (xs, xl) = x.storage_and_layout();
        let (hs, hl) = h.storage_and_layout();
        let (ws, wl) = weight.storage_and_layout();
        let (xv, hv) = (view::<T>(&xs, xl, "x")?, view::<T>(&hs, hl, "h")?);
        let wv = view::<T>(&ws, wl, "weight")?;
        let sum = alloc::<T>(&dev, rows * cols)?;
        let norm = alloc::<T>(&dev, rows * cols)?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        b.arg(&xv).arg(&hv).arg(&wv).arg(&sum).arg(&norm);
        let cols_i = cols as i32;
        b.arg(cols_i).arg(eps);
        // Vectorised: one 16-byte chunk a thread where the row allows (hidden sizes up to
        // 8192 in bf16).
        let threads = match vec {
            Some(v) => (cols / v).next_multiple_of(32).clamp(32, 1024) as u32,
            None if cols >= 1024 => 1024,
            None => 256,
        };
        // SAFETY: pointers and sizes match the kernel's signature and the shapes checked above.
        unsafe { b.launch(launch_cfg(rows, threads)) }?;
        Ok((
            wrap(sum, &dev, (rows, cols)),
            wrap(norm, &dev, (rows, cols)),
        ))
    })
}

/// `silu(gu[:, :n]) * gu[:, n:]` for a packed `[rows, 2n]` gate/up projection.
pub fn silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    let dev = cuda_device(gate_up, "silu_mul input")?;
    let (rows, two_n) = gate_up.dims2()?;
    if two_n % 2 != 0 {
        return Err(bad(format!("silu_mul needs an even width, got {two_n}")));
    }
    let n = two_n / 2;
    let dtype = gate_up.dtype();
    let vec = vector_width(dtype, n, &[gate_up]);
    let name = kernel_name("silu_mul", vec.is_some(), dtype)?;
    let func = dev.get_or_load_custom_func(&name, "fused", ptx::FUSED)?;
    with_float_type!(dtype, T, {
        let (gs, gl) = gate_up.storage_and_layout();
        let gv = view::<T>(&gs, gl, "gate_up")?;
        let out = alloc::<T>(&dev, rows * n)?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        let (rows_i, n_i) = (rows as i32, n as i32);
        b.arg(&gv).arg(&out).arg(rows_i).arg(n_i);
        let threads = 128;
        let blocks = (rows * n / vec.unwrap_or(1)).div_ceil(threads).min(65535);
        // SAFETY: sizes match the allocation and the checked input shape.
        unsafe { b.launch(launch_cfg(blocks, threads as u32)) }?;
        Ok(wrap(out, &dev, (rows, n)))
    })
}

/// Rotates the queries and keys of a packed `[T, (heads + 2 kv_heads) * d]` QKV projection
/// with `cos`/`sin` (`[T, d/2]`, each token's position already selected), returns the queries
/// `[T, heads, d]` and writes the keys and values into `k_cache`/`v_cache`
/// (`[slots, kv_heads, d]`) at `slots` (`[T]` u32, checked by the caller to be in range).
#[allow(clippy::too_many_arguments)]
pub fn rope_qkv(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    slots: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    heads: usize,
    interleaved: bool,
) -> Result<Tensor> {
    let dev = cuda_device(qkv, "rope_qkv input")?;
    let (t, width) = qkv.dims2()?;
    let (_, kvh, d) = k_cache.dims3()?;
    let half = d / 2;
    let shapes_ok = width == (heads + 2 * kvh) * d
        && cos.elem_count() == t * half
        && sin.elem_count() == t * half
        && slots.dims1()? == t
        && slots.dtype() == DType::U32
        && v_cache.dims() == k_cache.dims();
    if !shapes_ok || d % 2 != 0 {
        return Err(bad(format!(
            "rope_qkv shapes qkv {:?} cos {:?} slots {:?} cache {:?} for {heads} heads",
            qkv.dims(),
            cos.dims(),
            slots.dims(),
            k_cache.dims()
        )));
    }
    let dtype = qkv.dtype();
    if [cos, sin, k_cache, v_cache]
        .iter()
        .any(|x| x.dtype() != dtype)
    {
        return Err(bad(
            "rope_qkv needs one dtype for qkv, cos/sin and the caches".into(),
        ));
    }
    let func =
        dev.get_or_load_custom_func(&format!("rope_qkv_{}", suffix(dtype)?), "fused", ptx::FUSED)?;
    with_float_type!(dtype, T, {
        let (qs, ql) = qkv.storage_and_layout();
        let (cs, cl) = cos.storage_and_layout();
        let (ss, sl) = sin.storage_and_layout();
        let (ts, tl) = slots.storage_and_layout();
        let (ks, kl) = k_cache.storage_and_layout();
        let (vs, vl) = v_cache.storage_and_layout();
        let qv = view::<T>(&qs, ql, "qkv")?;
        let (cv, sv) = (view::<T>(&cs, cl, "cos")?, view::<T>(&ss, sl, "sin")?);
        let tv = view::<u32>(&ts, tl, "slots")?;
        // The caches are written through views of shared guards: the kernel owns these rows
        // for the step, and all work is ordered on the one device stream.
        let (kv, vv) = (
            view::<T>(&ks, kl, "k_cache")?,
            view::<T>(&vs, vl, "v_cache")?,
        );
        let q_out = alloc::<T>(&dev, t * heads * d)?;
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        b.arg(&qv)
            .arg(&cv)
            .arg(&sv)
            .arg(&tv)
            .arg(&q_out)
            .arg(&kv)
            .arg(&vv);
        let (h_i, kvh_i, d_i, il) = (heads as i32, kvh as i32, d as i32, interleaved as i32);
        b.arg(h_i).arg(kvh_i).arg(d_i).arg(il);
        let cfg = LaunchConfig {
            grid_dim: (t.max(1) as u32, (heads + 2 * kvh) as u32, 1),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        if t > 0 {
            // SAFETY: shapes checked above; slots were range-checked by the caller.
            unsafe { b.launch(cfg) }?;
        } else {
            drop(b); // nothing to do: release the argument borrows
        }
        Ok(wrap(q_out, &dev, (t, heads, d)))
    })
}

/// Writes `k`/`v` (`[T, kv_heads, d]`) into the caches at `slots` (the unfused cache write).
pub fn write_kv(
    k: &Tensor,
    v: &Tensor,
    slots: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
) -> Result<()> {
    let dev = cuda_device(k, "write_kv input")?;
    let (t, kvh, d) = k.dims3()?;
    let (_, ckvh, cd) = k_cache.dims3()?;
    if v.dims3()? != (t, kvh, d)
        || (ckvh, cd) != (kvh, d)
        || slots.dims1()? != t
        || v_cache.dims() != k_cache.dims()
    {
        return Err(bad(format!(
            "write_kv shapes k {:?} v {:?} slots {:?} cache {:?}",
            k.dims(),
            v.dims(),
            slots.dims(),
            k_cache.dims()
        )));
    }
    let dtype = k_cache.dtype();
    let func =
        dev.get_or_load_custom_func(&format!("write_kv_{}", suffix(dtype)?), "fused", ptx::FUSED)?;
    let (k, v) = (
        k.to_dtype(dtype)?.contiguous()?,
        v.to_dtype(dtype)?.contiguous()?,
    );
    with_float_type!(dtype, T, {
        let (kss, ksl) = k.storage_and_layout();
        let (vss, vsl) = v.storage_and_layout();
        let (ts, tl) = slots.storage_and_layout();
        let (kcs, kcl) = k_cache.storage_and_layout();
        let (vcs, vcl) = v_cache.storage_and_layout();
        let (kv, vv) = (view::<T>(&kss, ksl, "k")?, view::<T>(&vss, vsl, "v")?);
        let tv = view::<u32>(&ts, tl, "slots")?;
        let (kc, vc) = (
            view::<T>(&kcs, kcl, "k_cache")?,
            view::<T>(&vcs, vcl, "v_cache")?,
        );
        let stream = dev.cuda_stream();
        let mut b = Launch::new(&stream, &func);
        let width = (kvh * d) as i32;
        b.arg(&kv).arg(&vv).arg(&tv).arg(&kc).arg(&vc).arg(width);
        if t > 0 {
            // SAFETY: shapes checked above; slots were range-checked by the caller.
            unsafe { b.launch(launch_cfg(t, 128)) }?;
        } else {
            drop(b); // nothing to do: release the argument borrows
        }
        Ok(())
    })
}
