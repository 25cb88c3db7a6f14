//! The per-request token chooser: TGI's `HeterogeneousNextTokenChooser`, one row at a time.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::logprobs::{argmax, log_softmax_in_place};
use super::penalties::{apply_frequency_penalty, apply_repetition_penalty, TokenCounts};
use super::warpers::{apply_temperature, apply_top_k, apply_top_p, apply_typical_p, WarpScratch};
use super::watermark::{Watermark, WatermarkConfig};
use super::{SamplingError, SamplingParams};

/// The chosen token and its log-probability under the processed and warped distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// Token id.
    pub id: u32,
    /// Its log-probability (natural log).
    pub logprob: f32,
}

/// Chooses a request's next tokens. Owns its sampling stream (seeded once from
/// `params.seed`, one draw per sampled token), so the same seed and logits give the same
/// tokens whatever else is in the batch.
#[derive(Debug, Clone)]
pub struct NextTokenChooser {
    params: SamplingParams,
    sampling: bool,
    rng: ChaCha20Rng,
    watermark: Option<Watermark>,
    seen: TokenCounts,
    scratch: WarpScratch,
}

impl NextTokenChooser {
    /// Validates `params`; a watermarking request reads `WATERMARK_GAMMA`/`WATERMARK_DELTA`.
    pub fn new(params: SamplingParams) -> Result<Self, SamplingError> {
        let watermark = if params.watermark {
            WatermarkConfig::from_env()?
        } else {
            WatermarkConfig::default()
        };
        Self::with_watermark_config(params, watermark)
    }

    /// As [`NextTokenChooser::new`] with an explicit watermark configuration.
    pub fn with_watermark_config(
        params: SamplingParams,
        watermark: WatermarkConfig,
    ) -> Result<Self, SamplingError> {
        params.validate()?;
        let watermark = if params.watermark {
            watermark.validate()?;
            Some(Watermark::new(watermark))
        } else {
            None
        };
        Ok(Self {
            params,
            sampling: params.is_sampling(),
            rng: ChaCha20Rng::seed_from_u64(params.seed),
            watermark,
            seen: TokenCounts::default(),
            scratch: WarpScratch::default(),
        })
    }

    /// The parameters this chooser was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether tokens are drawn at random (`do_sample` or any warper) rather than argmax.
    pub fn is_sampling(&self) -> bool {
        self.sampling
    }

    /// Whether the choice is the raw logits' argmax with its raw logprob: greedy, no
    /// penalties, no watermark. Such rows can be reduced on the device.
    pub fn is_plain_greedy(&self) -> bool {
        let p = &self.params;
        !self.sampling
            && self.watermark.is_none()
            && p.repetition_penalty == 1.0
            && p.frequency_penalty == 0.0
            && p.temperature == 1.0
    }

    /// Picks the next token from one logits row.
    ///
    /// `previous_ids` is the request's whole history, prompt then generated tokens (the
    /// chosen token is not recorded here: it arrives in the next call's history). Only its new
    /// tail is counted each step.
    ///
    /// On return `logits` holds the log-softmax of the processed and warped scores (filtered
    /// tokens at `-inf`): pass it to [`super::top_n_logprobs`] for the request's top tokens.
    /// NaN logits are treated as `-inf`; if some are `+inf`, they share all the mass.
    pub fn choose(
        &mut self,
        logits: &mut [f32],
        previous_ids: &[u32],
    ) -> Result<Choice, SamplingError> {
        if logits.is_empty() {
            return Err(SamplingError::EmptyLogits);
        }
        let p = self.params;

        if let Some(watermark) = self.watermark.as_mut() {
            watermark.apply(logits, previous_ids);
        }
        if p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 {
            self.seen.sync(previous_ids);
            if p.repetition_penalty != 1.0 {
                apply_repetition_penalty(logits, &self.seen, p.repetition_penalty);
            }
            if p.frequency_penalty != 0.0 {
                apply_frequency_penalty(logits, &self.seen, p.frequency_penalty);
            }
        }
        if p.temperature != 1.0 {
            apply_temperature(logits, p.temperature);
        }
        // NaN and +inf survive the steps above unchanged (or come from overflow there); the
        // filtering warpers need a clean row.
        if !sanitize(logits) {
            return Err(SamplingError::NoFiniteLogits {
                vocab_size: logits.len(),
            });
        }
        apply_top_k(logits, p.top_k, &mut self.scratch);
        apply_top_p(logits, p.top_p, &mut self.scratch);
        apply_typical_p(logits, p.typical_p, &mut self.scratch);

        let greedy_id = if self.sampling { None } else { argmax(logits) };
        if log_softmax_in_place(logits).is_none() {
            return Err(SamplingError::NoFiniteLogits {
                vocab_size: logits.len(),
            });
        }
        let id = match greedy_id {
            Some(id) => id,
            None => self.draw(logits),
        };
        Ok(Choice {
            id,
            logprob: logits[id as usize],
        })
    }

    /// Categorical draw from a log-softmax row: one uniform per token, inverse CDF.
    fn draw(&mut self, logprobs: &[f32]) -> u32 {
        // The row is normalised, so the CDF ends at 1 up to rounding; the fallback below
        // covers a target that rounding left above it.
        let target = self.rng.random::<f64>();
        let mut cumulative = 0.0;
        let mut last_possible = 0;
        for (i, &lp) in logprobs.iter().enumerate() {
            let p = lp.exp();
            if p == 0.0 {
                continue;
            }
            cumulative += f64::from(p);
            last_possible = i;
            if cumulative > target {
                return i as u32;
            }
        }
        last_possible as u32
    }
}

/// NaN becomes `-inf`; if any `+inf` remains, those tokens become 0 and all others `-inf`.
/// Returns whether any token is still possible.
fn sanitize(row: &mut [f32]) -> bool {
    let mut has_pos_inf = false;
    let mut has_finite = false;
    for x in row.iter_mut() {
        if x.is_nan() {
            *x = f32::NEG_INFINITY;
        } else if *x == f32::INFINITY {
            has_pos_inf = true;
        } else if x.is_finite() {
            has_finite = true;
        }
    }
    if has_pos_inf {
        for x in row.iter_mut() {
            *x = if *x == f32::INFINITY {
                0.0
            } else {
                f32::NEG_INFINITY
            };
        }
        return true;
    }
    has_finite
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::top_n_logprobs;

    const NEG: f32 = f32::NEG_INFINITY;

    fn chooser(params: SamplingParams) -> NextTokenChooser {
        NextTokenChooser::with_watermark_config(params, WatermarkConfig::default()).unwrap()
    }

    fn sampling(seed: u64) -> SamplingParams {
        SamplingParams {
            do_sample: true,
            seed,
            ..SamplingParams::default()
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    /// Token frequencies over `n` draws from fresh copies of `logits`.
    fn frequencies(params: SamplingParams, logits: &[f32], n: usize) -> Vec<f64> {
        let mut c = chooser(params);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            let mut row = logits.to_vec();
            counts[c.choose(&mut row, &[]).unwrap().id as usize] += 1;
        }
        counts.iter().map(|&k| k as f64 / n as f64).collect()
    }

    #[test]
    fn greedy_takes_argmax_with_lowest_id_on_ties_and_reports_its_logprob() {
        let mut c = chooser(SamplingParams::default());
        assert!(!c.is_sampling());
        let mut row = [1.0, 3.0, 3.0, 0.0];
        let choice = c.choose(&mut row, &[]).unwrap();
        assert_eq!(choice.id, 1);
        let lse = (1f32.exp() + 2.0 * 3f32.exp() + 1.0).ln();
        assert!(close(choice.logprob, 3.0 - lse));
        assert!(close(row[0], 1.0 - lse) && close(row[3], 0.0 - lse));
    }

    #[test]
    fn greedy_logprob_is_taken_after_penalties() {
        // Penalty 2 on id 1: [1, 3, 3, 0] -> [1, 1.5, 3, 0]; argmax moves to id 2.
        let mut c = chooser(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::default()
        });
        let mut row = [1.0, 3.0, 3.0, 0.0];
        let choice = c.choose(&mut row, &[1, 1]).unwrap();
        let lse = (1f32.exp() + 1.5f32.exp() + 3f32.exp() + 1.0).ln();
        assert_eq!(choice.id, 2);
        assert!(close(choice.logprob, 3.0 - lse));
        assert!(close(row[1], 1.5 - lse));
    }

    #[test]
    fn frequency_penalty_uses_counts_over_the_whole_history() {
        // History of 4: id 1 three times (0.75), id 0 once (0.25).
        // [1.0, 1.2] - [0.25, 0.75] = [0.75, 0.45] -> id 0.
        let mut c = chooser(SamplingParams {
            frequency_penalty: 1.0,
            ..SamplingParams::default()
        });
        let mut row = [1.0, 1.2];
        assert_eq!(c.choose(&mut row, &[1, 1, 0, 1]).unwrap().id, 0);
        let lse = (0.75f32.exp() + 0.45f32.exp()).ln();
        assert!(close(row[0], 0.75 - lse) && close(row[1], 0.45 - lse));
        // Next step: the history grew by one id 0 (len 5, counts 2 and 3).
        let mut row = [1.0, 1.2];
        c.choose(&mut row, &[1, 1, 0, 1, 0]).unwrap();
        let (a, b) = (1.0 - 2.0 / 5.0, 1.2 - 3.0 / 5.0);
        let lse = (f32::exp(a) + f32::exp(b)).ln();
        assert!(close(row[0], a - lse) && close(row[1], b - lse));
    }

    #[test]
    fn sampled_logprob_and_row_are_after_warpers() {
        // T = 0.5: [1, 2, 3] -> [2, 4, 6]; top_k 2 -> [-inf, 4, 6].
        let mut c = chooser(SamplingParams {
            temperature: 0.5,
            top_k: 2,
            ..SamplingParams::default()
        });
        assert!(c.is_sampling());
        let mut row = [1.0, 2.0, 3.0];
        let choice = c.choose(&mut row, &[]).unwrap();
        let lse = (4f32.exp() + 6f32.exp()).ln();
        assert_eq!(row[0], NEG);
        assert!(close(row[1], 4.0 - lse) && close(row[2], 6.0 - lse));
        assert!(choice.id == 1 || choice.id == 2);
        assert_eq!(choice.logprob, row[choice.id as usize]);
        assert_eq!(
            top_n_logprobs(&row, 5),
            vec![(2, row[2]), (1, row[1])],
            "filtered tokens are not reported"
        );
    }

    #[test]
    fn same_seed_same_tokens_different_seeds_differ() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.1).collect();
        let run = |seed| {
            let mut c = chooser(sampling(seed));
            (0..50)
                .map(|_| c.choose(&mut logits.clone(), &[]).unwrap().id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        assert_ne!(run(0), run(u64::MAX));
    }

    #[test]
    fn draws_do_not_depend_on_other_requests() {
        let logits: Vec<f32> = (0..64).map(|i| (i as f32).sin()).collect();
        let mut alone = chooser(sampling(7));
        let mut together = chooser(sampling(7));
        let mut neighbour = chooser(sampling(7));
        for step in 0..30 {
            let a = alone.choose(&mut logits.clone(), &[]).unwrap();
            for _ in 0..step % 3 {
                neighbour.choose(&mut logits.clone(), &[]).unwrap();
            }
            let b = together.choose(&mut logits.clone(), &[]).unwrap();
            assert_eq!(a, b, "step {step}");
        }
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let probs = [0.1f32, 0.2, 0.7];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let freq = frequencies(sampling(1), &logits, 20_000);
        for (f, p) in freq.iter().zip(probs) {
            assert!((f - f64::from(p)).abs() < 0.02, "{freq:?}");
        }
    }

    #[test]
    fn top_k_one_and_tiny_top_p_always_give_the_argmax() {
        let logits = [0.5, 2.0, 1.9, -1.0, 2.0 - 1e-3];
        for params in [
            SamplingParams {
                top_k: 1,
                ..sampling(3)
            },
            SamplingParams {
                top_p: 1e-4,
                ..sampling(3)
            },
        ] {
            assert_eq!(frequencies(params, &logits, 500)[1], 1.0, "{params:?}");
        }
    }

    #[test]
    fn temperature_sharpens_or_flattens_the_distribution() {
        // p(1) = 1 / (1 + e^(-1/T)): T = 0.1 -> 0.99995, T = 100 -> 0.5025.
        let logits = [0.0, 1.0];
        let cold = frequencies(
            SamplingParams {
                temperature: 0.1,
                ..sampling(5)
            },
            &logits,
            4_000,
        );
        assert!(cold[1] > 0.995, "{cold:?}");
        let hot = frequencies(
            SamplingParams {
                temperature: 100.0,
                ..sampling(5)
            },
            &logits,
            4_000,
        );
        assert!((hot[1] - 0.5025).abs() < 0.03, "{hot:?}");
    }

    #[test]
    fn watermark_pushes_greedy_choice_into_the_greenlist() {
        let config = WatermarkConfig {
            gamma: 0.5,
            delta: 2.0,
        };
        let params = SamplingParams {
            watermark: true,
            ..SamplingParams::default()
        };
        let mut c = NextTokenChooser::with_watermark_config(params, config).unwrap();
        let green = Watermark::new(config).greenlist(11, 32).to_vec();
        // Flat logits: every green token scores 2, so the lowest green id wins.
        let mut row = [0.0f32; 32];
        let choice = c.choose(&mut row, &[3, 11]).unwrap();
        assert_eq!(choice.id, *green.iter().min().unwrap());
        let lse = (16.0 * 2f32.exp() + 16.0).ln();
        assert!(close(choice.logprob, 2.0 - lse));
    }

    #[test]
    fn nan_inf_and_degenerate_rows_never_panic() {
        let mut c = chooser(SamplingParams::default());
        let mut row = [f32::NAN, 1.0, f32::NAN];
        assert_eq!(
            c.choose(&mut row, &[]).unwrap(),
            Choice {
                id: 1,
                logprob: 0.0
            }
        );
        assert_eq!(row, [NEG, 0.0, NEG]);

        let mut row = [1.0, f32::INFINITY, 3.0];
        assert_eq!(c.choose(&mut row, &[]).unwrap().id, 1);

        let err = c.choose(&mut [f32::NAN, NEG], &[]).unwrap_err();
        assert_eq!(err, SamplingError::NoFiniteLogits { vocab_size: 2 });
        assert_eq!(c.choose(&mut [], &[]), Err(SamplingError::EmptyLogits));

        // Every warper and penalty at once, ids beyond the vocab, top_k beyond the vocab.
        let mut all = chooser(SamplingParams {
            temperature: 0.7,
            top_k: 1000,
            top_p: 0.9,
            typical_p: 0.9,
            repetition_penalty: 1.3,
            frequency_penalty: 0.5,
            watermark: true,
            ..sampling(9)
        });
        for row in [
            vec![f32::NAN, f32::NAN, 0.0],
            vec![f32::MAX, -f32::MAX, 1.0],
            vec![NEG, NEG, 5.0],
            vec![0.0],
        ] {
            let mut row = row;
            let choice = all.choose(&mut row, &[2, 99_999, 0]).unwrap();
            assert!((choice.id as usize) < row.len());
            assert!(
                choice.logprob.is_finite() && choice.logprob <= 0.0,
                "{choice:?}"
            );
        }
    }

    #[test]
    fn invalid_parameters_are_rejected_at_construction() {
        let params = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        assert!(matches!(
            NextTokenChooser::new(params),
            Err(SamplingError::InvalidParameter {
                name: "temperature",
                ..
            })
        ));
    }
}
