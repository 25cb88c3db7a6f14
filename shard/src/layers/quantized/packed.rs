//! Load-time repacking of GGUF Q4_0 / Q4_1 / Q8_0 weight rows into 8-row interleaved groups.
//!
//! GGUF stores a `[out, in]` matrix row by row, each row a run of 32-value blocks. The kernels
//! instead compute 8 output rows at once with one 32-bit SIMD lane per row, so rows are
//! interleaved in groups of [`GROUP_ROWS`]: for group `g` and block `k` the bytes are
//!
//! - Q4 (Q4_0 and Q4_1): `d[8]: f16`, `m[8]: f16`, then 128 nibble bytes where bytes
//!   `c * 32 + j * 4 .. + 4` are row `j`'s GGUF bytes `4c .. 4c + 4` (low nibble = value `i`,
//!   high nibble = value `i + 16`, exactly as in GGUF). A value is `q * d + m`; Q4_0's
//!   `(q - 8) * d` becomes `m = -8 d` (exact in f16: a power-of-two scaling).
//! - Q8 (Q8_0): `d[8]: f16`, then 256 bytes where bytes `c * 32 + j * 4 .. + 4` are row `j`'s
//!   values `4c .. 4c + 4`, stored as `q ^ 0x80` (that is `q + 128` as an unsigned byte, so
//!   VNNI's unsigned-by-signed dot product applies directly).
//!
//! The byte count equals GGUF's (8 rows × 20 = 160, 8 × 34 = 272), so the repacked copy
//! costs no extra memory traffic. A last, partial group is padded with zero rows (`d = 0`).

use candle_core::quantized::GgmlDType;
use half::f16;

/// Values per quantization block (all supported formats).
pub(super) const BLOCK: usize = 32;
/// Output rows computed together, one per 32-bit lane of a 256-bit vector.
pub(super) const GROUP_ROWS: usize = 8;
/// Bytes of one Q4 group-block: 8 `d`, 8 `m`, 8 × 16 nibble bytes.
pub(super) const Q4_GROUP_BLOCK: usize = 16 + 16 + GROUP_ROWS * BLOCK / 2;
/// Bytes of one Q8 group-block: 8 `d`, 8 × 32 value bytes.
pub(super) const Q8_GROUP_BLOCK: usize = 16 + GROUP_ROWS * BLOCK;

/// Which kernel family a repacked matrix needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// 4-bit unsigned values with per-block scale and offset (from Q4_0 or Q4_1).
    Q4,
    /// 8-bit signed values with a per-block scale (from Q8_0).
    Q8,
}

/// A `[rows, cols]` quantized matrix in the interleaved layout described in the module docs.
#[derive(Debug)]
pub(super) struct PackedWeights {
    format: Format,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl PackedWeights {
    /// Repacks GGUF block bytes of a `[rows, cols]` matrix; `None` for other dtypes, for
    /// `cols` not a multiple of 32, or for a byte count that does not match the shape.
    pub(super) fn from_gguf(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Option<Self> {
        if rows == 0 || cols == 0 || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let src_block = match dtype {
            GgmlDType::Q4_0 => 18,
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return None,
        };
        let blocks = cols / BLOCK;
        if bytes.len() != rows * blocks * src_block {
            return None;
        }
        let format = if dtype == GgmlDType::Q8_0 {
            Format::Q8
        } else {
            Format::Q4
        };
        let mut packed = Self {
            format,
            rows,
            cols,
            data: Vec::new(),
        };
        packed.data = vec![0u8; packed.groups() * blocks * packed.group_block_bytes()];
        let gb = packed.group_block_bytes();
        for row in 0..rows {
            let (g, j) = (row / GROUP_ROWS, row % GROUP_ROWS);
            for k in 0..blocks {
                let src = &bytes[(row * blocks + k) * src_block..][..src_block];
                let dst = &mut packed.data[(g * blocks + k) * gb..][..gb];
                match dtype {
                    GgmlDType::Q4_0 => {
                        let d = f16::from_le_bytes([src[0], src[1]]);
                        let m = f16::from_f32(-8.0 * d.to_f32());
                        put_q4(dst, j, d, m, &src[2..18]);
                    }
                    GgmlDType::Q4_1 => {
                        let d = f16::from_le_bytes([src[0], src[1]]);
                        let m = f16::from_le_bytes([src[2], src[3]]);
                        put_q4(dst, j, d, m, &src[4..20]);
                    }
                    _ => put_q8(dst, j, [src[0], src[1]], &src[2..34]),
                }
            }
        }
        Some(packed)
    }

    /// Kernel family.
    pub(super) fn format(&self) -> Format {
        self.format
    }

    /// Output features (`out`).
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (`in`).
    pub(super) fn cols(&self) -> usize {
        self.cols
    }

    /// Blocks per row.
    pub(super) fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    /// Row groups, the last one possibly padded.
    pub(super) fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP_ROWS)
    }

    /// Bytes of one group-block.
    pub(super) fn group_block_bytes(&self) -> usize {
        match self.format {
            Format::Q4 => Q4_GROUP_BLOCK,
            Format::Q8 => Q8_GROUP_BLOCK,
        }
    }

    /// Bytes of one whole row group (all its blocks).
    pub(super) fn group_bytes(&self) -> usize {
        self.blocks() * self.group_block_bytes()
    }

    /// The bytes of row group `g` (all blocks, in order).
    pub(super) fn group(&self, g: usize) -> &[u8] {
        &self.data[g * self.group_bytes()..][..self.group_bytes()]
    }
}

/// Writes row `j`'s scale, offset and nibbles into a Q4 group-block.
fn put_q4(dst: &mut [u8], j: usize, d: f16, m: f16, qs: &[u8]) {
    dst[2 * j..2 * j + 2].copy_from_slice(&d.to_le_bytes());
    dst[16 + 2 * j..16 + 2 * j + 2].copy_from_slice(&m.to_le_bytes());
    for c in 0..4 {
        dst[32 + c * 32 + j * 4..][..4].copy_from_slice(&qs[4 * c..4 * c + 4]);
    }
}

/// Writes row `j`'s scale and offset-by-128 values into a Q8 group-block.
fn put_q8(dst: &mut [u8], j: usize, d: [u8; 2], qs: &[u8]) {
    dst[2 * j..2 * j + 2].copy_from_slice(&d);
    for c in 0..8 {
        for (o, &q) in dst[16 + c * 32 + j * 4..][..4]
            .iter_mut()
            .zip(&qs[4 * c..4 * c + 4])
        {
            *o = q ^ 0x80;
        }
    }
}
