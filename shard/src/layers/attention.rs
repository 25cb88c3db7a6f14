//! The self-attention block: fused QKV projection, rotary, paged attention, output projection.

use super::rotary::Rope;
use crate::error::{Result, ShardError};
use crate::kv::{AttentionMetadata, PagedAttention, QkvLayout};
use crate::models::config::ModelConfig;
use crate::parallel::{ColumnParallelLinear, Comm, RowParallelLinear};
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};

/// Self-attention of one decoder layer (this rank's heads).
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: ColumnParallelLinear,
    o_proj: RowParallelLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    /// Loads `prefix.{q,k,v,o}_proj`; heads are split evenly over ranks.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        cfg: &ModelConfig,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let world = comm.world_size();
        if !cfg.num_heads.is_multiple_of(world) || !cfg.num_kv_heads.is_multiple_of(world) {
            return Err(ShardError::Sharding(format!(
                "{} attention heads and {} key/value heads must both be divisible by the number of shards ({world})",
                cfg.num_heads, cfg.num_kv_heads
            )));
        }
        let q_rows = cfg.num_heads * cfg.head_dim;
        let kv_rows = cfg.num_kv_heads * cfg.head_dim;
        crate::weights::expect_shape(
            src,
            &format!("{prefix}.q_proj.weight"),
            &[q_rows, cfg.hidden_size],
        )?;
        crate::weights::expect_shape(
            src,
            &format!("{prefix}.k_proj.weight"),
            &[kv_rows, cfg.hidden_size],
        )?;
        crate::weights::expect_shape(
            src,
            &format!("{prefix}.v_proj.weight"),
            &[kv_rows, cfg.hidden_size],
        )?;
        let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{prefix}.{n}"));
        Ok(Self {
            qkv: ColumnParallelLinear::load(src, &names, cfg.qkv_bias, comm, dtype, device)?,
            o_proj: RowParallelLinear::load(
                src,
                &format!("{prefix}.o_proj"),
                false,
                comm,
                dtype,
                device,
            )?,
            heads: cfg.num_heads / world,
            kv_heads: cfg.num_kv_heads / world,
            head_dim: cfg.head_dim,
        })
    }

    /// `x`: `[T, hidden]` (already normalised) -> `[T, hidden]`.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        layer: usize,
        kv: &mut dyn PagedAttention,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let layout = QkvLayout {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        let attn = kv.forward_qkv(layer, &qkv, layout, rope, meta)?;
        self.o_proj.forward(&attn)
    }
}
