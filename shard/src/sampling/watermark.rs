//! Green-list watermark ("A Watermark for Large Language Models", Kirchenbauer et al. 2023),
//! with TGI's parameters: `gamma` (green fraction, env `WATERMARK_GAMMA`, default 0.5),
//! `delta` (bias, env `WATERMARK_DELTA`, default 2.0), seed `15485863 * previous token`.
//!
//! TGI draws the green list with `torch.randperm`; this draws it with a seeded ChaCha
//! Fisher–Yates shuffle. The scheme and its strength are the same, but the lists differ, so
//! text watermarked here is detected with this module's [`Watermark::greenlist`], not TGI's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::SamplingError;

/// TGI's hash key: a large prime so the per-token seed has enough bits.
const HASH_KEY: u64 = 15_485_863;

/// Green-list fraction and bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatermarkConfig {
    /// Fraction of the vocabulary in each green list, in [0, 1].
    pub gamma: f32,
    /// Bias added to green tokens' scores.
    pub delta: f32,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            gamma: 0.5,
            delta: 2.0,
        }
    }
}

impl WatermarkConfig {
    /// Reads `WATERMARK_GAMMA` and `WATERMARK_DELTA`, defaulting each when unset.
    pub fn from_env() -> Result<Self, SamplingError> {
        let default = Self::default();
        let config = Self {
            gamma: env_f32("WATERMARK_GAMMA", default.gamma)?,
            delta: env_f32("WATERMARK_DELTA", default.delta)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects a `gamma` outside [0, 1] or a non-finite `delta`.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(SamplingError::InvalidParameter {
                name: "watermark gamma",
                value: self.gamma,
                expected: "must be in [0, 1]",
            });
        }
        if !self.delta.is_finite() {
            return Err(SamplingError::InvalidParameter {
                name: "watermark delta",
                value: self.delta,
                expected: "must be finite",
            });
        }
        Ok(())
    }
}

fn env_f32(name: &'static str, default: f32) -> Result<f32, SamplingError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => raw
            .trim()
            .parse()
            .map_err(|_| SamplingError::InvalidEnv { name, value: raw }),
    }
}

/// Adds `delta` to a green list of `floor(gamma * vocab)` tokens chosen from the previous token.
#[derive(Debug, Clone)]
pub struct Watermark {
    config: WatermarkConfig,
    permutation: Vec<u32>,
}

impl Watermark {
    /// A watermark with the given parameters.
    pub fn new(config: WatermarkConfig) -> Self {
        Self {
            config,
            permutation: Vec::new(),
        }
    }

    /// Biases `scores`; a request with no previous token is left as is (TGI requires one).
    pub fn apply(&mut self, scores: &mut [f32], previous_ids: &[u32]) {
        let Some(&previous) = previous_ids.last() else {
            return;
        };
        let delta = self.config.delta;
        let vocab = scores.len();
        for &id in self.greenlist(previous, vocab) {
            scores[id as usize] += delta;
        }
    }

    /// The green list that follows `previous` in a vocabulary of `vocab` tokens.
    pub fn greenlist(&mut self, previous: u32, vocab: usize) -> &[u32] {
        let size = ((vocab as f64 * f64::from(self.config.gamma)) as usize).min(vocab);
        let mut rng = ChaCha20Rng::seed_from_u64(HASH_KEY.wrapping_mul(u64::from(previous)));
        let permutation = &mut self.permutation;
        permutation.clear();
        permutation.extend(0..vocab as u32);
        // Partial Fisher–Yates: only the first `size` positions are needed.
        for i in 0..size {
            let j = rng.random_range(i..vocab);
            permutation.swap(i, j);
        }
        &permutation[..size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greenlist_has_gamma_fraction_of_distinct_ids_and_depends_on_previous_token() {
        let mut w = Watermark::new(WatermarkConfig::default());
        let mut a = w.greenlist(17, 1000).to_vec();
        assert_eq!(a.len(), 500);
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|&id| id < 1000));

        let mut again = w.greenlist(17, 1000).to_vec();
        again.sort_unstable();
        assert_eq!(a, again, "same previous token, same list");
        let mut other = w.greenlist(18, 1000).to_vec();
        other.sort_unstable();
        assert_ne!(a, other);
    }

    #[test]
    fn apply_adds_delta_to_green_tokens_only() {
        let config = WatermarkConfig {
            gamma: 0.25,
            delta: 3.0,
        };
        let mut w = Watermark::new(config);
        let green = w.greenlist(5, 8).to_vec();
        assert_eq!(green.len(), 2);
        let mut scores = [1.0f32; 8];
        w.apply(&mut scores, &[9, 5]);
        for (id, &s) in scores.iter().enumerate() {
            let expected = if green.contains(&(id as u32)) {
                4.0
            } else {
                1.0
            };
            assert_eq!(s, expected, "id {id}");
        }
    }

    #[test]
    fn no_previous_token_or_empty_row_is_a_no_op() {
        let mut w = Watermark::new(WatermarkConfig::default());
        let mut scores = [1.0f32; 4];
        w.apply(&mut scores, &[]);
        assert_eq!(scores, [1.0; 4]);
        w.apply(&mut [], &[3]);
    }

    #[test]
    fn config_validation() {
        assert!(WatermarkConfig::default().validate().is_ok());
        let bad = WatermarkConfig {
            gamma: 1.5,
            delta: 2.0,
        };
        assert!(bad.validate().is_err());
    }
}
