//! SwiGLU MLP: `down(silu(gate(x)) * up(x))`, gate and up fused into one matmul.

use crate::error::Result;
use crate::parallel::{ColumnParallelLinear, Comm, RowParallelLinear};
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};

/// The feed-forward block of a decoder layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_up: ColumnParallelLinear,
    down: RowParallelLinear,
    local_intermediate: usize,
}

impl Mlp {
    /// Loads `prefix.{gate,up,down}_proj`.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        intermediate: usize,
        comm: &Comm,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let names = [format!("{prefix}.gate_proj"), format!("{prefix}.up_proj")];
        Ok(Self {
            gate_up: ColumnParallelLinear::load(src, &names, false, comm, dtype, device)?,
            down: RowParallelLinear::load(
                src,
                &format!("{prefix}.down_proj"),
                false,
                comm,
                dtype,
                device,
            )?,
            local_intermediate: intermediate / comm.world_size(),
        })
    }

    /// `[T, hidden]` -> `[T, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(h) = self.gated_gemv(x)? {
            return self.down.forward(&h);
        }
        let gu = self.gate_up.forward(x)?;
        let h = silu_mul(&gu, self.local_intermediate)?;
        self.down.forward(&h)
    }

    /// `silu(gate(x)) * up(x)` in one kernel for decode-sized `x` on a GPU, when the gate/up
    /// weight is dense.
    #[cfg(feature = "cuda")]
    fn gated_gemv(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self.gate_up.dense_weight() {
            Some(w)
                if x.device().is_cuda()
                    && x.rank() == 2
                    && w.dim(0)? == 2 * self.local_intermediate =>
            {
                crate::kernels::silu_gated_linear(x, w)
            }
            _ => Ok(None),
        }
    }
}

/// `silu(gate) * up` of a packed `[T, 2n]` gate/up projection: one kernel on CUDA.
fn silu_mul(gate_up: &Tensor, n: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if gate_up.device().is_cuda() && gate_up.is_contiguous() && gate_up.dim(1)? == 2 * n {
        return crate::kernels::silu_mul(gate_up);
    }
    let gate = gate_up.narrow(1, 0, n)?;
    let up = gate_up.narrow(1, n, n)?;
    Ok((candle_nn::ops::silu(&gate)? * up)?)
}
