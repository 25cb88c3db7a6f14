//! The four collectives on top of [`Mesh::exchange`]: every one is a single all-to-all
//! exchange, so each costs one network hop.

use super::transport::Mesh;
use super::wire::{decode_tensor, encode_tensor, with_element_type, Header, Op, Summable};
use crate::error::{Result, ShardError};
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

/// Every rank's sum, accumulated in f32 in rank order `0, 1, …, N-1` on every rank and
/// rounded once to `x`'s dtype.
pub(super) fn all_reduce_sum(mesh: &mut Mesh, x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 => all_reduce_as::<f32>(mesh, x),
        DType::F16 => all_reduce_as::<f16>(mesh, x),
        DType::BF16 => all_reduce_as::<bf16>(mesh, x),
        other => Err(ShardError::Communication(format!(
            "all_reduce_sum supports f32, f16 and bf16, not {other:?}"
        ))),
    }
}

fn all_reduce_as<T: Summable>(mesh: &mut Mesh, x: &Tensor) -> Result<Tensor> {
    let seq = mesh.begin()?;
    let header = Header::for_tensor(Op::AllReduceSum, 0, seq, x)?;
    header.encode_into(&mut mesh.send);
    encode_tensor::<T>(x, &mut mesh.send)?;
    let mut acc = vec![0f32; x.elem_count()];
    let check = |mine: &Header, theirs: &Header| {
        if mine.same_tensor(theirs) {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?} here, {:?} {:?} there",
                mine.dtype,
                mine.dims(),
                theirs.dtype,
                theirs.dims()
            ))
        }
    };
    mesh.exchange(&header, &check, |_, offset, chunks| {
        let start = offset / T::SIZE;
        for (r, bytes) in chunks.iter().enumerate() {
            let dst = &mut acc[start..start + bytes.len() / T::SIZE];
            let values = bytes.chunks_exact(T::SIZE).map(|b| T::get(b).to_f32());
            if r == 0 {
                dst.iter_mut().zip(values).for_each(|(a, v)| *a = v);
            } else {
                dst.iter_mut().zip(values).for_each(|(a, v)| *a += v);
            }
        }
        Ok(())
    })?;
    let out: Vec<T> = acc.into_iter().map(T::from_f32).collect();
    Ok(Tensor::from_vec(out, x.shape(), &Device::Cpu)?.to_device(x.device())?)
}

/// Every rank's `x` concatenated along `dim` in rank order. Sizes along `dim` may differ
/// between ranks; every other dimension and the dtype must match.
pub(super) fn all_gather(mesh: &mut Mesh, x: &Tensor, dim: usize) -> Result<Tensor> {
    if dim >= x.rank() {
        return Err(ShardError::Communication(format!(
            "all_gather: dimension {dim} out of range for shape {:?}",
            x.dims()
        )));
    }
    with_element_type!(x.dtype(), T => all_gather_as::<T>(mesh, x, dim))
}

fn all_gather_as<T: super::wire::Element>(
    mesh: &mut Mesh,
    x: &Tensor,
    dim: usize,
) -> Result<Tensor> {
    let seq = mesh.begin()?;
    let header = Header::for_tensor(Op::AllGather, dim as u32, seq, x)?;
    header.encode_into(&mut mesh.send);
    encode_tensor::<T>(x, &mut mesh.send)?;
    let check = |mine: &Header, theirs: &Header| {
        let (a, b) = (mine.dims(), theirs.dims());
        let others_match = a.len() == b.len()
            && a.iter()
                .zip(&b)
                .enumerate()
                .all(|(i, (x, y))| i == dim || x == y);
        if theirs.aux == mine.aux && theirs.dtype == mine.dtype && others_match {
            Ok(())
        } else {
            Err(format!(
                "gathering {:?} {a:?} along {} here, {:?} {b:?} along {} there",
                mine.dtype, mine.aux, theirs.dtype, theirs.aux
            ))
        }
    };
    let rank = mesh.rank();
    let mut received: Vec<Vec<u8>> = vec![Vec::new(); mesh.world()];
    let mut shapes: Vec<Vec<usize>> = Vec::new();
    mesh.exchange(&header, &check, |headers, offset, chunks| {
        if offset == 0 {
            shapes = headers.iter().map(Header::dims).collect();
            for (buf, h) in received.iter_mut().zip(headers) {
                buf.reserve_exact(h.len as usize);
            }
        }
        for (r, bytes) in chunks.iter().enumerate() {
            if r != rank {
                received[r].extend_from_slice(bytes);
            }
        }
        Ok(())
    })?;
    let parts = received
        .iter()
        .zip(&shapes)
        .enumerate()
        .map(|(r, (bytes, dims))| {
            if r == rank {
                Ok(x.clone())
            } else {
                decode_tensor::<T>(bytes, dims, x.device())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, dim)?)
}

/// Rank `root`'s `x` on every rank. Only the root's tensor matters: the others may pass any
/// tensor on the device they want the result on.
pub(super) fn broadcast(mesh: &mut Mesh, x: &Tensor, root: usize) -> Result<Tensor> {
    if root >= mesh.world() {
        return Err(ShardError::Communication(format!(
            "broadcast: root {root} is out of range for world size {}",
            mesh.world()
        )));
    }
    let seq = mesh.begin()?;
    let is_root = mesh.rank() == root;
    let header = if is_root {
        Header::for_tensor(Op::Broadcast, root as u32, seq, x)?
    } else {
        Header::empty(Op::Broadcast, root as u32, seq)
    };
    header.encode_into(&mut mesh.send);
    if is_root {
        with_element_type!(x.dtype(), T => encode_tensor::<T>(x, &mut mesh.send))?;
    }
    let check = |mine: &Header, theirs: &Header| {
        if mine.aux == theirs.aux {
            Ok(())
        } else {
            Err(format!(
                "broadcast from {} here, from {} there",
                mine.aux, theirs.aux
            ))
        }
    };
    let mut bytes = Vec::new();
    let mut root_header = header;
    mesh.exchange(&header, &check, |headers, offset, chunks| {
        if offset == 0 {
            root_header = headers[root];
            bytes.reserve_exact(root_header.len as usize);
        }
        if !is_root {
            bytes.extend_from_slice(chunks[root]);
        }
        Ok(())
    })?;
    if is_root {
        return Ok(x.clone());
    }
    let dtype = root_header.dtype.ok_or_else(|| {
        ShardError::Communication(format!("broadcast: rank {root} sent no tensor"))
    })?;
    let dims = root_header.dims();
    with_element_type!(dtype, T => decode_tensor::<T>(&bytes, &dims, x.device()))
}

/// Returns once every rank has entered the barrier.
pub(super) fn barrier(mesh: &mut Mesh) -> Result<()> {
    let seq = mesh.begin()?;
    let header = Header::empty(Op::Barrier, 0, seq);
    header.encode_into(&mut mesh.send);
    mesh.exchange(&header, &|_, _| Ok(()), |_, _, _| Ok(()))
}
