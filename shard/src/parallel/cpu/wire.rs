//! Wire format of the CPU communicator: the fixed-size header that opens every collective
//! message and the little-endian encoding of tensor elements.

use crate::error::{Result, ShardError};
use candle_core::{DType, Device, Storage, Tensor, WithDType};
use half::{bf16, f16};

/// Marks a collective header ("TGIC"); a mismatch means the byte stream lost its framing.
const MAGIC: u32 = 0x5447_4943;
/// Highest tensor rank a header can describe.
pub(super) const MAX_DIMS: usize = 8;
/// Header size in bytes: magic, op, dtype, ndim, pad, aux, pad, seq, len, dims.
pub(super) const HEADER_LEN: usize = 32 + 8 * MAX_DIMS;

/// Which collective a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    AllReduceSum = 1,
    AllGather = 2,
    Broadcast = 3,
    Barrier = 4,
}

impl Op {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Op::AllReduceSum,
            2 => Op::AllGather,
            3 => Op::Broadcast,
            4 => Op::Barrier,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::AllReduceSum => "all_reduce_sum",
            Op::AllGather => "all_gather",
            Op::Broadcast => "broadcast",
            Op::Barrier => "barrier",
        })
    }
}

/// What one rank sends ahead of its payload in a collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub op: Op,
    /// Element type of the payload (`None`: no payload).
    pub dtype: Option<DType>,
    /// all_gather: the dimension; broadcast: the root; otherwise 0.
    pub aux: u32,
    /// Collective counter, equal on all ranks when they call collectives in the same order.
    pub seq: u64,
    /// Payload size in bytes.
    pub len: u64,
    ndim: u8,
    dims: [u64; MAX_DIMS],
}

impl Header {
    /// A header without payload.
    pub fn empty(op: Op, aux: u32, seq: u64) -> Self {
        Header {
            op,
            dtype: None,
            aux,
            seq,
            len: 0,
            ndim: 0,
            dims: [0; MAX_DIMS],
        }
    }

    /// A header announcing `x` as the payload.
    pub fn for_tensor(op: Op, aux: u32, seq: u64, x: &Tensor) -> Result<Self> {
        let shape = x.dims();
        if shape.len() > MAX_DIMS {
            return Err(ShardError::Communication(format!(
                "{op}: tensors of rank {} are not supported (at most {MAX_DIMS} dimensions)",
                shape.len()
            )));
        }
        dtype_code(x.dtype())?;
        let mut dims = [0u64; MAX_DIMS];
        for (d, &n) in dims.iter_mut().zip(shape) {
            *d = n as u64;
        }
        Ok(Header {
            op,
            dtype: Some(x.dtype()),
            aux,
            seq,
            len: (x.elem_count() * x.dtype().size_in_bytes()) as u64,
            ndim: shape.len() as u8,
            dims,
        })
    }

    /// The payload's shape.
    pub fn dims(&self) -> Vec<usize> {
        self.dims[..self.ndim as usize]
            .iter()
            .map(|&d| d as usize)
            .collect()
    }

    /// Same dtype and shape.
    pub fn same_tensor(&self, other: &Header) -> bool {
        self.dtype == other.dtype
            && self.ndim == other.ndim
            && self.dims[..self.ndim as usize] == other.dims[..other.ndim as usize]
    }

    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let dtype = self.dtype.and_then(|d| dtype_code(d).ok()).unwrap_or(0);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[self.op as u8, dtype, self.ndim, 0]);
        out.extend_from_slice(&self.aux.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        for d in self.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
    }

    /// Parses a header; the error says what is wrong with the bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> std::result::Result<Self, String> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(0) != MAGIC {
            return Err("bad magic: the byte stream lost its framing".into());
        }
        let op = Op::from_code(b[4]).ok_or_else(|| format!("unknown op code {}", b[4]))?;
        let dtype = match b[5] {
            0 => None,
            c => Some(code_dtype(c).ok_or_else(|| format!("unknown dtype code {c}"))?),
        };
        let ndim = b[6];
        if ndim as usize > MAX_DIMS {
            return Err(format!("{ndim} dimensions (at most {MAX_DIMS})"));
        }
        let mut dims = [0u64; MAX_DIMS];
        for (i, d) in dims.iter_mut().enumerate() {
            *d = u64_at(32 + 8 * i);
        }
        Ok(Header {
            op,
            dtype,
            aux: u32_at(8),
            seq: u64_at(16),
            len: u64_at(24),
            ndim,
            dims,
        })
    }
}

/// Dtypes that can travel: the three float types every collective supports, plus the
/// integer/f64 types that all_gather and broadcast carry unchanged.
fn dtype_code(dtype: DType) -> Result<u8> {
    Ok(match dtype {
        DType::F32 => 1,
        DType::F16 => 2,
        DType::BF16 => 3,
        DType::F64 => 4,
        DType::U32 => 5,
        DType::I64 => 6,
        DType::U8 => 7,
        other => {
            return Err(ShardError::Communication(format!(
                "dtype {other:?} is not supported by the CPU communicator \
                 (f32, f16, bf16, f64, u32, i64, u8 are)"
            )))
        }
    })
}

fn code_dtype(code: u8) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::F16,
        3 => DType::BF16,
        4 => DType::F64,
        5 => DType::U32,
        6 => DType::I64,
        7 => DType::U8,
        _ => return None,
    })
}

/// A tensor element with a fixed little-endian byte encoding.
pub(super) trait Element: WithDType {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Writes the element into `out` (exactly `SIZE` bytes).
    fn put(self, out: &mut [u8]);
    /// Reads an element from `bytes` (exactly `SIZE` bytes).
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! impl_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
impl_element!(f32, f16, bf16, f64, u32, i64, u8);

/// A float type summed through f32: the all-reduce accumulates in f32 on every rank and
/// rounds once at the end.
pub(super) trait Summable: Element {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Summable for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Summable for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Summable for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Runs `$body` with `$T` bound to the Rust element type of `$dtype`.
macro_rules! with_element_type {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F16 => {
                type $T = half::f16;
                $body
            }
            candle_core::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            candle_core::DType::U32 => {
                type $T = u32;
                $body
            }
            candle_core::DType::I64 => {
                type $T = i64;
                $body
            }
            candle_core::DType::U8 => {
                type $T = u8;
                $body
            }
            other => Err($crate::error::ShardError::Communication(format!(
                "dtype {other:?} is not supported by the CPU communicator"
            ))),
        }
    };
}
pub(super) use with_element_type;

/// Appends `x`'s elements (row-major, any layout, any device) to `out`.
pub(super) fn encode_tensor<T: Element>(x: &Tensor, out: &mut Vec<u8>) -> Result<()> {
    let x = if x.device().is_cpu() {
        x.clone()
    } else {
        x.to_device(&Device::Cpu)?
    };
    let x = if x.is_contiguous() {
        x
    } else {
        x.contiguous()?
    };
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ShardError::Communication(
            "tensor is not in host memory after moving it to the CPU".into(),
        ));
    };
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
        ShardError::Communication("tensor is not contiguous after `contiguous()`".into())
    })?;
    let data = &cpu.as_slice::<T>()?[start..end];
    let at = out.len();
    out.resize(at + data.len() * T::SIZE, 0);
    for (dst, &v) in out[at..].chunks_exact_mut(T::SIZE).zip(data) {
        v.put(dst);
    }
    Ok(())
}

/// A tensor of `dims` on `device` from encoded elements.
pub(super) fn decode_tensor<T: Element>(
    bytes: &[u8],
    dims: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let values: Vec<T> = bytes.chunks_exact(T::SIZE).map(T::get).collect();
    Ok(Tensor::from_vec(values, dims, &Device::Cpu)?.to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let x = Tensor::zeros((2, 3, 5), DType::BF16, &Device::Cpu).unwrap();
        let h = Header::for_tensor(Op::AllGather, 1, 42, &x).unwrap();
        let mut buf = Vec::new();
        h.encode_into(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        let back = Header::decode(buf.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.dims(), vec![2, 3, 5]);
        assert_eq!(back.len, 2 * 3 * 5 * 2);
    }

    #[test]
    fn bad_magic_is_reported() {
        let buf = [0u8; HEADER_LEN];
        assert!(Header::decode(&buf).unwrap_err().contains("magic"));
    }

    #[test]
    fn elements_round_trip_through_bytes() {
        let x = Tensor::new(&[[1.5f32, -2.25], [3.0, 1e-3]], &Device::Cpu).unwrap();
        let xt = x.t().unwrap();
        let mut buf = Vec::new();
        encode_tensor::<f32>(&xt, &mut buf).unwrap();
        let y = decode_tensor::<f32>(&buf, &[2, 2], &Device::Cpu).unwrap();
        assert_eq!(
            y.to_vec2::<f32>().unwrap(),
            xt.to_vec2::<f32>().unwrap(),
            "non-contiguous input is encoded in row-major order"
        );
    }
}
