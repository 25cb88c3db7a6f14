//! Tensor-parallel layers as TGI shards them: column-parallel (output split, no
//! communication), row-parallel (input split, all-reduce, bias on rank 0), vocab-parallel
//! embedding (all-reduce) and lm_head (all-gather of logits).
//!
//! The collectives run whatever the world size; with one rank the weights stay whole.

use super::{Comm, Split};
use crate::error::{Result, ShardError};
use crate::layers::linear::{concat_rows, Linear};
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};

/// Loads `names` split along the output dimension and stacks them (fused q/k/v or gate/up:
/// each tensor is split on its own, as TGI's `load_qkv`/`load_gate_up` do).
#[derive(Debug, Clone)]
pub struct ColumnParallelLinear {
    linear: Linear,
}

impl ColumnParallelLinear {
    /// Loads and fuses `prefix.{name}.weight` (and `.bias` where `bias`).
    pub fn load(
        src: &dyn WeightSource,
        names: &[String],
        bias: bool,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let split = Split::along(0, comm.as_ref());
        let weights = names
            .iter()
            .map(|n| src.linear(&format!("{n}.weight"), split, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        let bias = if bias {
            let parts = names
                .iter()
                .map(|n| src.tensor(&format!("{n}.bias"), split, dtype, device))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&parts, 0)?)
        } else {
            None
        };
        Ok(Self {
            linear: Linear::new(concat_rows(weights)?, bias)?,
        })
    }

    /// `[T, in]` -> `[T, local out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(x)
    }

    /// This rank's weight (`[local out, in]`) when the layer is dense without bias.
    pub fn dense_weight(&self) -> Option<&Tensor> {
        self.linear.dense_weight()
    }
}

/// Input dimension split over ranks; partial outputs are summed with an all-reduce.
#[derive(Debug, Clone)]
pub struct RowParallelLinear {
    linear: Linear,
    comm: Comm,
}

impl RowParallelLinear {
    /// Loads `name.weight` split on dim 1; the bias (if any) only on rank 0 so the sum adds it once.
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        bias: bool,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let w = src.linear(
            &format!("{name}.weight"),
            Split::along(1, comm.as_ref()),
            dtype,
            device,
        )?;
        let b = if bias && comm.rank() == 0 {
            Some(src.tensor(&format!("{name}.bias"), Split::Full, dtype, device)?)
        } else {
            None
        };
        Ok(Self {
            linear: Linear::new(w, b)?,
            comm: comm.clone(),
        })
    }

    /// `[T, local in]` -> `[T, out]`, summed over ranks (the all-reduce runs for one rank
    /// too: it is the identity there, or NCCL's own for `--sharded` on one GPU).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear.forward(x)?;
        self.comm.all_reduce_sum(&y)
    }
}

/// Token embedding with the vocabulary split in equal blocks over ranks.
#[derive(Debug, Clone)]
pub struct VocabParallelEmbedding {
    /// Local rows plus one trailing zero row for ids owned by other ranks.
    weight: Tensor,
    start: u32,
    rows: u32,
    comm: Comm,
}

impl VocabParallelEmbedding {
    /// Loads `name` (`[vocab, hidden]`).
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = src.shape(name)?;
        let vocab = shape.first().copied().unwrap_or(0);
        let world = comm.world_size();
        if world > 1 && vocab % world != 0 {
            return Err(ShardError::Sharding(format!(
                "vocabulary size {vocab} of `{name}` is not divisible by {world} shards"
            )));
        }
        let w = src.tensor(name, Split::along(0, comm.as_ref()), dtype, device)?;
        let rows = w.dim(0)?;
        let hidden = w.dim(1)?;
        let weight = if world == 1 {
            w
        } else {
            Tensor::cat(&[w, Tensor::zeros((1, hidden), dtype, device)?], 0)?
        };
        Ok(Self {
            weight,
            start: (comm.rank() * rows) as u32,
            rows: rows as u32,
            comm: comm.clone(),
        })
    }

    /// `ids` (`[T]` u32 on the host) -> `[T, hidden]`.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let local = self.local_ids(ids);
        self.forward_local(&Tensor::new(local.as_slice(), self.weight.device())?)
    }

    /// The rows of this rank's table that `ids` read: ids owned by other ranks map to the
    /// trailing zero row, so the all-reduce sums exactly one embedding per token.
    pub fn local_ids(&self, ids: &[u32]) -> Vec<u32> {
        if self.comm.world_size() == 1 {
            return ids.to_vec();
        }
        ids.iter()
            .map(|&id| {
                if id >= self.start && id < self.start + self.rows {
                    id - self.start
                } else {
                    self.rows
                }
            })
            .collect()
    }

    /// `local` (`[T]` u32 on the device, from [`Self::local_ids`]) -> `[T, hidden]`.
    pub fn forward_local(&self, local: &Tensor) -> Result<Tensor> {
        self.comm
            .all_reduce_sum(&self.weight.index_select(local, 0)?)
    }
}

/// lm_head with the vocabulary split over ranks; every rank gets the full logits.
#[derive(Debug, Clone)]
pub struct ParallelLmHead {
    linear: Linear,
    comm: Comm,
}

impl ParallelLmHead {
    /// Loads `name` (`[vocab, hidden]`), split on the vocabulary.
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let w = src.linear(name, Split::along(0, comm.as_ref()), dtype, device)?;
        Ok(Self {
            linear: Linear::new(w, None)?,
            comm: comm.clone(),
        })
    }

    /// `[R, hidden]` -> `[R, vocab]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear.forward(x)?;
        self.comm.all_gather(&y.contiguous()?, 1)
    }
}
