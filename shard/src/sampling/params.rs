//! Per-request sampling parameters (TGI's `NextTokenChooserParameters`) and their validation.

use super::SamplingError;

/// TGI's `NextTokenChooserParameters`, minus the grammar fields.
///
/// Neutral values disable a step: `temperature == 1`, `top_k == 0`, `top_p == 1`,
/// `typical_p == 1`, `repetition_penalty == 1`, `frequency_penalty == 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Divides the scores; must be finite and > 0.
    pub temperature: f32,
    /// Keep the `top_k` highest scores (and ties with the k-th); 0 disables.
    pub top_k: u32,
    /// Nucleus mass in (0, 1]; 1 disables.
    pub top_p: f32,
    /// Typical-decoding mass in (0, 1]; 1 disables.
    pub typical_p: f32,
    /// Sample even when no warper is active.
    pub do_sample: bool,
    /// Seeds the request's sampling stream.
    pub seed: u64,
    /// CTRL-style penalty on every id seen so far; must be finite and > 0; 1 disables.
    pub repetition_penalty: f32,
    /// Subtracts `penalty * count / len` per seen id; must be finite; 0 disables.
    pub frequency_penalty: f32,
    /// Bias a pseudo-random green list of tokens (Kirchenbauer et al.).
    pub watermark: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            typical_p: 1.0,
            do_sample: false,
            seed: 0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            watermark: false,
        }
    }
}

impl SamplingParams {
    /// Rejects values that would make the warpers meaningless (division by zero, empty nucleus).
    pub fn validate(&self) -> Result<(), SamplingError> {
        let invalid = |name, value, expected| {
            Err(SamplingError::InvalidParameter {
                name,
                value,
                expected,
            })
        };
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return invalid("temperature", self.temperature, "must be finite and > 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return invalid("typical_p", self.typical_p, "must be in (0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return invalid(
                "repetition_penalty",
                self.repetition_penalty,
                "must be finite and > 0",
            );
        }
        if !self.frequency_penalty.is_finite() {
            return invalid(
                "frequency_penalty",
                self.frequency_penalty,
                "must be finite",
            );
        }
        Ok(())
    }

    /// TGI's `has_warpers`: any of temperature, top-k, top-p, typical-p is active.
    pub fn has_warpers(&self) -> bool {
        self.temperature != 1.0 || self.top_k != 0 || self.top_p < 1.0 || self.typical_p < 1.0
    }

    /// TGI samples when asked to or when any warper is active; otherwise it is greedy.
    pub fn is_sampling(&self) -> bool {
        self.do_sample || self.has_warpers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_greedy_and_valid() {
        let p = SamplingParams::default();
        assert!(p.validate().is_ok());
        assert!(!p.has_warpers());
        assert!(!p.is_sampling());
    }

    #[test]
    fn any_warper_turns_sampling_on() {
        let base = SamplingParams::default();
        for p in [
            SamplingParams {
                temperature: 0.7,
                ..base
            },
            SamplingParams { top_k: 5, ..base },
            SamplingParams { top_p: 0.9, ..base },
            SamplingParams {
                typical_p: 0.9,
                ..base
            },
            SamplingParams {
                do_sample: true,
                ..base
            },
        ] {
            assert!(p.is_sampling(), "{p:?}");
        }
        // Penalties and watermark are processors, not warpers: still greedy.
        let p = SamplingParams {
            repetition_penalty: 1.2,
            frequency_penalty: 0.5,
            watermark: true,
            ..base
        };
        assert!(!p.is_sampling());
    }

    #[test]
    fn invalid_values_are_rejected_with_the_field_name() {
        let base = SamplingParams::default();
        let cases = [
            (
                "temperature",
                SamplingParams {
                    temperature: 0.0,
                    ..base
                },
            ),
            (
                "temperature",
                SamplingParams {
                    temperature: f32::NAN,
                    ..base
                },
            ),
            ("top_p", SamplingParams { top_p: 0.0, ..base }),
            ("top_p", SamplingParams { top_p: 1.5, ..base }),
            (
                "typical_p",
                SamplingParams {
                    typical_p: -0.1,
                    ..base
                },
            ),
            (
                "repetition_penalty",
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..base
                },
            ),
            (
                "frequency_penalty",
                SamplingParams {
                    frequency_penalty: f32::INFINITY,
                    ..base
                },
            ),
        ];
        for (field, p) in cases {
            match p.validate() {
                Err(SamplingError::InvalidParameter { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: expected InvalidParameter, got {other:?}"),
            }
        }
    }
}
