//! Next-token selection: TGI's logits processors, warpers and token chooser over `f32` rows.
//!
//! One [`NextTokenChooser`] per request. Each step it takes the request's logits row and the
//! ids seen so far (prompt + generated) and applies, in TGI's order:
//!
//! 1. watermark bias (`watermark`), see [`watermark`]
//! 2. repetition penalty, then frequency penalty, see [`penalties`]
//! 3. warpers: temperature → top-k → top-p → typical-p, see [`warpers`]
//! 4. greedy argmax, or a seeded categorical draw when `do_sample` or any warper is active
//!
//! On return the row holds the log-softmax of the processed and warped scores: the values TGI
//! reports as the chosen token's logprob and feeds to `batch_top_tokens`
//! ([`top_n_logprobs`]).
//!
//! Reference: TGI `server/text_generation_server/utils/tokens.py`
//! (`HeterogeneousNextTokenChooser`, `batch_top_tokens`) and `utils/logits_process.py`
//! (the `Heterogeneous*` processors), `utils/watermark.py`.

mod chooser;
pub mod logprobs;
mod params;
pub mod penalties;
pub mod warpers;
pub mod watermark;

pub use chooser::{Choice, NextTokenChooser};
pub use logprobs::{argmax, log_softmax_in_place, top_n_logprobs};
pub use params::SamplingParams;
pub use watermark::WatermarkConfig;

/// What can go wrong when building a chooser or choosing a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A request parameter is out of its range.
    #[error("invalid sampling parameter `{name}` = {value}: {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value received.
        value: f32,
        /// The accepted range.
        expected: &'static str,
    },
    /// A watermark environment variable is not a number.
    #[error("environment variable {name}={value:?} is not a number")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The model produced a row with no entries.
    #[error("cannot choose a token from an empty logits row")]
    EmptyLogits,
    /// Every token is impossible after processing (NaN or `-inf` logits).
    #[error("no token can be chosen: all {vocab_size} logits are NaN or -inf")]
    NoFiniteLogits {
        /// Row length.
        vocab_size: usize,
    },
}
