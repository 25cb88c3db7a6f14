//! The Llama-family decoder stack shared by Llama, Mistral and Qwen2: embedding, N pre-norm
//! layers (attention + SwiGLU MLP with residuals), final norm and lm_head. Runs a ragged batch
//! of new tokens against the paged KV cache in one forward.

use super::config::ModelConfig;
use crate::error::{Result, ShardError};
use crate::kv::{AttentionMetadata, PagedAttention};
use crate::layers::attention::SelfAttention;
use crate::layers::mlp::Mlp;
use crate::layers::rms_norm::RmsNorm;
use crate::layers::rotary::RotaryEmbedding;
use crate::parallel::{Comm, ParallelLmHead, VocabParallelEmbedding};
use crate::timer::PhaseTimer;
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_norm: RmsNorm,
    attention: SelfAttention,
    post_attention_norm: RmsNorm,
    mlp: Mlp,
}

/// One forward's inputs: the new tokens of every sequence, flattened.
#[derive(Debug, Clone)]
pub struct ForwardInput {
    /// Token ids, `T` of them.
    pub input_ids: Vec<u32>,
    /// Slots, positions and block tables.
    pub meta: AttentionMetadata,
    /// Indices (into the `T` tokens) whose logits are needed, in output order.
    pub logit_rows: Vec<u32>,
}

/// One forward's per-token inputs on the device.
#[derive(Debug, Clone)]
pub struct ForwardTensors {
    /// `[T]` u32 embedding rows ([`DecoderModel::embedding_ids`] of the token ids).
    pub ids: Tensor,
    /// `[T]` u32 absolute positions.
    pub positions: Tensor,
    /// `[R]` u32 token indices whose logits are needed; `None`: every token, in order.
    pub logit_rows: Option<Tensor>,
}

/// A loaded decoder-only model.
#[derive(Debug, Clone)]
pub struct DecoderModel {
    config: ModelConfig,
    embed: VocabParallelEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: ParallelLmHead,
    rotary: RotaryEmbedding,
    dtype: DType,
    device: Device,
}

impl DecoderModel {
    /// Loads every weight of `cfg` from `src` (this rank's part of each).
    pub fn load(
        src: &dyn WeightSource,
        cfg: &ModelConfig,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let embed_name = "model.embed_tokens.weight";
        crate::weights::expect_shape(src, embed_name, &[cfg.vocab_size, cfg.hidden_size])?;
        let layers = (0..cfg.num_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Ok(DecoderLayer {
                    input_norm: RmsNorm::load(
                        src,
                        &format!("{p}.input_layernorm.weight"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                        dtype,
                        device,
                    )?,
                    attention: SelfAttention::load(
                        src,
                        &format!("{p}.self_attn"),
                        cfg,
                        comm,
                        dtype,
                        device,
                    )?,
                    post_attention_norm: RmsNorm::load(
                        src,
                        &format!("{p}.post_attention_layernorm.weight"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                        dtype,
                        device,
                    )?,
                    mlp: Mlp::load(
                        src,
                        &format!("{p}.mlp"),
                        cfg.intermediate_size,
                        comm,
                        dtype,
                        device,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head_name = if cfg.tie_word_embeddings || !src.contains("lm_head.weight") {
            embed_name
        } else {
            "lm_head.weight"
        };
        Ok(Self {
            config: cfg.clone(),
            embed: VocabParallelEmbedding::load(src, embed_name, comm, dtype, device)?,
            layers,
            norm: RmsNorm::load(
                src,
                "model.norm.weight",
                cfg.hidden_size,
                cfg.rms_norm_eps,
                dtype,
                device,
            )?,
            lm_head: ParallelLmHead::load(src, head_name, comm, dtype, device)?,
            rotary: RotaryEmbedding::new(cfg, dtype, device)?,
            dtype,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the new tokens through the model, writing their K/V into `kv`; returns f32 logits
    /// `[logit_rows.len(), vocab]`.
    pub fn forward(&self, input: &ForwardInput, kv: &mut dyn PagedAttention) -> Result<Tensor> {
        self.check(input)?;
        let t = input.input_ids.len();
        let every_row = input.logit_rows.iter().copied().eq(0..t as u32);
        let tensors = ForwardTensors {
            ids: Tensor::new(
                self.embedding_ids(&input.input_ids).as_slice(),
                &self.device,
            )?,
            positions: Tensor::new(input.meta.token_pos.as_slice(), &self.device)?,
            logit_rows: if every_row {
                None
            } else {
                Some(Tensor::new(input.logit_rows.as_slice(), &self.device)?)
            },
        };
        self.forward_tensors(&tensors, &input.meta, kv, true)
    }

    /// Checks a forward's token ids, positions and metadata sizes against the model.
    pub fn check(&self, input: &ForwardInput) -> Result<()> {
        let t = input.input_ids.len();
        if t == 0 || input.meta.num_tokens() != t {
            return Err(ShardError::InvalidArgument(format!(
                "forward with {t} tokens and metadata for {}",
                input.meta.num_tokens()
            )));
        }
        if let Some(&p) = input
            .meta
            .token_pos
            .iter()
            .find(|&&p| p as usize >= self.rotary.max_positions())
        {
            return Err(ShardError::InvalidArgument(format!(
                "position {p} exceeds the model's max_position_embeddings ({})",
                self.rotary.max_positions()
            )));
        }
        if let Some(&id) = input
            .input_ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ShardError::InvalidArgument(format!(
                "token id {id} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// The ids the embedding reads for `ids` (this rank's rows of the vocabulary).
    pub fn embedding_ids(&self, ids: &[u32]) -> Vec<u32> {
        self.embed.local_ids(ids)
    }

    /// The forward from inputs already on the device, e.g. a captured graph's static buffers;
    /// `meta` must describe the same tokens. `timed` records the debug phase timer, which
    /// synchronises and so must be off while a CUDA graph is being captured.
    pub fn forward_tensors(
        &self,
        input: &ForwardTensors,
        meta: &AttentionMetadata,
        kv: &mut dyn PagedAttention,
        timed: bool,
    ) -> Result<Tensor> {
        let t = input.ids.dim(0)?;
        let mut timer = if timed {
            PhaseTimer::start(&self.device)
        } else {
            PhaseTimer::default()
        };
        let rope = self.rotary.select(&input.positions)?;
        let x = self.embed.forward_local(&input.ids)?;
        // Each residual add is fused with the norm that follows it (the next layer's input
        // norm, or the final norm after the last layer).
        let Some(first) = self.layers.first() else {
            return Err(ShardError::InvalidConfig("the model has no layers".into()));
        };
        let mut h = first.input_norm.forward(&x)?;
        let mut x = x;
        timer.mark("prologue");
        for (i, layer) in self.layers.iter().enumerate() {
            let a = layer.attention.forward(&h, &rope, i, kv, meta)?;
            timer.mark("attention");
            let (x1, h1) = layer.post_attention_norm.forward_residual(&x, &a)?;
            let m = layer.mlp.forward(&h1)?;
            let next_norm = self.layers.get(i + 1).map_or(&self.norm, |l| &l.input_norm);
            (x, h) = next_norm.forward_residual(&x1, &m)?;
            timer.mark("mlp");
        }
        let x = match &input.logit_rows {
            Some(rows) => h.index_select(rows, 0)?,
            None => h,
        };
        let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        timer.mark("lm_head");
        let phases = timer.finish();
        if !phases.is_empty() {
            tracing::debug!(tokens = t, "device time: {phases}");
        }
        Ok(logits)
    }
}
