//! Quantization at load time (`--quantize bitsandbytes` / `eetq`): the linear weights of a
//! dense checkpoint are re-encoded into 8-bit blocks as they are read, weight-only, like
//! bitsandbytes' int8 mode. The blocks are GGUF's Q8_0 (32 weights sharing one f16 scale), so
//! the shard's own quantized CPU matmul serves them; embeddings and norms stay dense.

use super::{LinearWeight, WeightSource};
use crate::error::{Result, ShardError};
use crate::parallel::Split;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// `--quantize` values this shard applies itself.
pub const SUPPORTED: &str = "bitsandbytes, eetq (8-bit weights)";

/// How linear weights are quantized while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadQuantization {
    /// 8-bit blocks (Q8_0).
    Int8,
}

impl LoadQuantization {
    /// Parses TGI's `--quantize` value; other methods get an error naming what works.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "bitsandbytes" | "eetq" => Ok(Self::Int8),
            other => Err(ShardError::InvalidConfig(format!(
                "--quantize {other} is not supported: this shard quantizes with {SUPPORTED}; for \
                 4-bit weights serve a GGUF file (e.g. Q4_0/Q4_1/Q4_K)"
            ))),
        }
    }

    fn ggml_dtype(self) -> GgmlDType {
        match self {
            Self::Int8 => GgmlDType::Q8_0,
        }
    }
}

/// A [`WeightSource`] that quantizes the dense linear weights of `inner`.
pub struct QuantizingSource<'a> {
    inner: &'a dyn WeightSource,
    mode: LoadQuantization,
}

impl<'a> QuantizingSource<'a> {
    /// Wraps `inner`; only CPU weights are quantized in this build.
    pub fn new(
        inner: &'a dyn WeightSource,
        mode: LoadQuantization,
        device: &Device,
    ) -> Result<Self> {
        if !device.is_cpu() {
            return Err(ShardError::InvalidConfig(format!(
                "--quantize is applied on the CPU only in this build (device {device:?}); \
                 serve the checkpoint unquantized or as a GGUF file"
            )));
        }
        Ok(Self { inner, mode })
    }

    /// `w` (`[out, in]`) as 8-bit blocks, or unchanged when `in` is not a whole number of
    /// blocks.
    fn quantize(&self, w: Tensor) -> Result<LinearWeight> {
        let kind = self.mode.ggml_dtype();
        let block = kind.block_size();
        let (_, cols) = w.dims2()?;
        if !cols.is_multiple_of(block) {
            tracing::debug!(
                cols,
                block,
                "linear weight left dense: not a whole number of blocks"
            );
            return Ok(LinearWeight::Dense(w));
        }
        let f32_weights = w.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        Ok(LinearWeight::Quantized(Arc::new(QTensor::quantize(
            &f32_weights,
            kind,
        )?)))
    }
}

impl WeightSource for QuantizingSource<'_> {
    fn describe(&self) -> String {
        format!(
            "{} (quantized to {SUPPORTED} at load)",
            self.inner.describe()
        )
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.inner.shape(name)
    }

    fn tensor(&self, name: &str, split: Split, dtype: DType, device: &Device) -> Result<Tensor> {
        self.inner.tensor(name, split, dtype, device)
    }

    fn linear(
        &self,
        name: &str,
        split: Split,
        dtype: DType,
        device: &Device,
    ) -> Result<LinearWeight> {
        match self.inner.linear(name, split, dtype, device)? {
            LinearWeight::Dense(w) => self.quantize(w),
            already => Ok(already),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::linear::Linear;

    /// A source holding one dense tensor.
    struct One(Tensor);

    impl WeightSource for One {
        fn describe(&self) -> String {
            "test".into()
        }
        fn contains(&self, _: &str) -> bool {
            true
        }
        fn shape(&self, _: &str) -> Result<Vec<usize>> {
            Ok(self.0.dims().to_vec())
        }
        fn tensor(&self, _: &str, _: Split, _: DType, _: &Device) -> Result<Tensor> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn parses_tgi_values_and_names_what_works() {
        assert_eq!(
            LoadQuantization::parse("bitsandbytes").ok(),
            Some(LoadQuantization::Int8)
        );
        assert_eq!(
            LoadQuantization::parse("eetq").ok(),
            Some(LoadQuantization::Int8)
        );
        let e = LoadQuantization::parse("bitsandbytes-nf4").expect_err("4-bit");
        assert!(e.to_string().contains("bitsandbytes, eetq"), "{e}");
    }

    #[test]
    fn linear_weights_become_8_bit_blocks_close_to_the_dense_product() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (96, 256), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (5, 256), &dev)?;
        let src = One(w.clone());
        let q = QuantizingSource::new(&src, LoadQuantization::Int8, &dev)?;
        let lw = q.linear("w", Split::Full, DType::F32, &dev)?;
        let LinearWeight::Quantized(qt) = &lw else {
            panic!("expected a quantized weight");
        };
        assert_eq!(qt.dtype(), GgmlDType::Q8_0);
        // 34 bytes per 32 weights instead of 128.
        assert_eq!(qt.storage_size_in_bytes(), 96 * 256 / 32 * 34);
        let got = Linear::new(lw, None)?.forward(&x)?;
        let want = x.matmul(&w.t()?)?;
        // Q8_0 rounds both the weights and the activations: about 0.5% RMS error each, so
        // the output's relative RMS error sits near 0.7%. The RMS over 480 outputs is
        // stable from one random draw to the next; the single worst output is not.
        let err = (&got - &want)?
            .sqr()?
            .sum_all()?
            .sqrt()?
            .to_scalar::<f32>()?;
        let scale = want.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        assert!(err / scale < 1.5e-2, "relative RMS error {}", err / scale);
        Ok(())
    }

    #[test]
    fn widths_that_are_not_whole_blocks_stay_dense() -> Result<()> {
        let dev = Device::Cpu;
        let src = One(Tensor::randn(0f32, 1.0, (4, 40), &dev)?);
        let q = QuantizingSource::new(&src, LoadQuantization::Int8, &dev)?;
        assert!(matches!(
            q.linear("w", Split::Full, DType::F32, &dev)?,
            LinearWeight::Dense(_)
        ));
        Ok(())
    }
}
