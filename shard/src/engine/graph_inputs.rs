//! The packed input buffer of a captured decode graph: every per-step input in one u32
//! tensor, so a step costs one upload, and the in-place upload itself.

use crate::error::{Result, ShardError};
use crate::kv::AttentionMetadata;
use candle_core::{CpuStorage, DType, Layout, Tensor};

/// Shortest slot table a graph is captured for; longer ones round up to a power of two.
const MIN_TABLE: usize = 128;

/// Where each input lives in the packed buffer of a graph of `batch` rows whose slot-table
/// rows are `table` long: ids, positions, slots, token->sequence, sequence offsets (one
/// `batch`-long run each), then `batch` slot-table rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Packing {
    /// Rows (the batch bucket).
    pub batch: usize,
    /// Slots per sequence row of the table.
    pub table: usize,
}

impl Packing {
    /// Values in the buffer.
    pub fn len(&self) -> usize {
        5 * self.batch + self.batch * self.table
    }

    /// The packed host buffer of a decode step of `ids.len() <= batch` sequences, each with
    /// at most `table` slots.
    pub fn fill(&self, ids: &[u32], meta: &AttentionMetadata) -> Result<Vec<u32>> {
        let b = self.batch;
        let fits = ids.len() <= b
            && meta.token_pos.len() == ids.len()
            && meta.token_slots.len() == ids.len()
            && meta.seq_slots.len() <= b
            && meta.seq_slots.iter().all(|s| s.len() <= self.table);
        if !fits {
            return Err(ShardError::InvalidArgument(format!(
                "a decode step of {} tokens does not fit a graph of {self:?}",
                ids.len()
            )));
        }
        let mut host = vec![0u32; self.len()];
        host[..ids.len()].copy_from_slice(ids);
        host[b..b + ids.len()].copy_from_slice(&meta.token_pos);
        host[2 * b..2 * b + ids.len()].copy_from_slice(&meta.token_slots);
        for i in 0..b {
            host[3 * b + i] = i as u32;
            host[4 * b + i] = (i * self.table) as u32;
        }
        for (i, slots) in meta.seq_slots.iter().enumerate() {
            let row = 5 * b + i * self.table;
            host[row..row + slots.len()].copy_from_slice(slots);
        }
        // Padding rows: id 0 at position 0, writing and reading slot 0 (zeros already).
        Ok(host)
    }
}

/// The slot-table bucket for sequences of up to `len` positions.
pub(super) fn table_bucket(len: usize) -> usize {
    len.next_power_of_two().max(MIN_TABLE)
}

/// Copies `host` into the device tensor `t` in place (same length, u32).
pub(super) fn upload(t: &Tensor, host: Vec<u32>) -> Result<()> {
    if t.dims1()? != host.len() || t.dtype() != DType::U32 {
        return Err(ShardError::InvalidArgument(format!(
            "graph input upload of {} values into {:?} {:?}",
            host.len(),
            t.dims(),
            t.dtype()
        )));
    }
    Ok(t.inplace_op1(&Upload(host))?)
}

/// In-place host-to-device copy into a contiguous u32 tensor.
struct Upload(Vec<u32>);

impl candle_core::InplaceOp1 for Upload {
    fn name(&self) -> &'static str {
        "graph-input-upload"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::U32(dst) = storage else {
            candle_core::bail!("graph inputs are u32");
        };
        let start = layout.start_offset();
        dst[start..start + self.0.len()].copy_from_slice(&self.0);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &mut candle_core::cuda_backend::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<()> {
        let dev = storage.device.clone();
        let slice = storage.as_cuda_slice_mut::<u32>()?;
        let start = layout.start_offset();
        let mut dst = slice.slice_mut(start..start + self.0.len());
        dev.memcpy_htod(self.0.as_slice(), &mut dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_each_sequence_row_at_its_offset_and_pads_with_slot_zero() -> Result<()> {
        let p = Packing { batch: 4, table: 8 };
        let meta = AttentionMetadata {
            token_slots: vec![37, 18],
            token_seq: vec![0, 1],
            token_pos: vec![5, 2],
            seq_slots: vec![vec![32, 33, 34, 35, 36, 37], vec![16, 17, 18]],
            sliding_window: None,
            softmax_scale: 1.0,
        };
        let host = p.fill(&[7, 9], &meta)?;
        assert_eq!(host.len(), 5 * 4 + 4 * 8);
        assert_eq!(&host[0..4], &[7, 9, 0, 0]);
        assert_eq!(&host[4..8], &[5, 2, 0, 0]);
        assert_eq!(&host[8..12], &[37, 18, 0, 0]);
        assert_eq!(&host[12..16], &[0, 1, 2, 3]);
        assert_eq!(&host[16..20], &[0, 8, 16, 24]);
        let table = &host[20..];
        assert_eq!(&table[0..6], &[32, 33, 34, 35, 36, 37]);
        assert_eq!(&table[8..11], &[16, 17, 18]);
        assert!(table[16..].iter().all(|&s| s == 0));
        // A sequence longer than the table row, or more tokens than rows, is refused.
        let long = AttentionMetadata {
            seq_slots: vec![(0..9).collect(), vec![1]],
            ..meta.clone()
        };
        assert!(p.fill(&[7, 9], &long).is_err());
        assert!(p.fill(&[1, 2, 3, 4, 5], &meta).is_err());
        Ok(())
    }

    #[test]
    fn table_buckets_are_powers_of_two_from_the_minimum() {
        assert_eq!(table_bucket(1), MIN_TABLE);
        assert_eq!(table_bucket(MIN_TABLE), MIN_TABLE);
        assert_eq!(table_bucket(MIN_TABLE + 1), 2 * MIN_TABLE);
        assert_eq!(table_bucket(3000), 4096);
    }

    #[test]
    fn upload_writes_in_place() -> Result<()> {
        let t = Tensor::zeros(6, DType::U32, &candle_core::Device::Cpu)?;
        let view = t.clone();
        upload(&t, vec![1, 2, 3, 4, 5, 6])?;
        assert_eq!(view.to_vec1::<u32>()?, vec![1, 2, 3, 4, 5, 6]);
        assert!(upload(&t, vec![1]).is_err());
        Ok(())
    }
}
