//! Types crossing the Backend seam: validated requests in, stream messages out.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use utoipa::ToSchema;

/// Why a sequence stopped.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Length,
    EosToken,
    StopSequence,
}

impl FinishReason {
    /// TGI's raw name (`length`, `eos_token`, `stop_sequence`).
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken => "eos_token",
            FinishReason::StopSequence => "stop_sequence",
        }
    }

    /// The OpenAI name: EOS becomes `stop`, the others keep TGI's names.
    pub fn openai(&self) -> &'static str {
        match self {
            FinishReason::EosToken => "stop",
            other => other.as_str(),
        }
    }
}

/// One prompt token (logprob NaN, i.e. JSON `null`, for the first one).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct PrefillToken {
    pub id: u32,
    pub text: String,
    #[schema(nullable = true)]
    pub logprob: f32,
}

/// One generated token.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Token {
    pub id: u32,
    pub text: String,
    #[schema(nullable = true)]
    pub logprob: f32,
    pub special: bool,
}

/// A grammar after validation.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidGrammar {
    /// A JSON schema, serialized.
    Json(String),
    /// A regular expression.
    Regex(String),
}

/// Sampling parameters after validation and defaulting.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidParameters {
    pub temperature: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub typical_p: f32,
    pub do_sample: bool,
    pub seed: u64,
    pub watermark: bool,
    pub grammar: Option<ValidGrammar>,
}

/// Stopping parameters after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidStoppingParameters {
    /// Tokens scheduled in this pass (at most 1024).
    pub max_new_tokens: u32,
    /// Tokens the client asked for in total (passes are re-queued until reached).
    pub max_total_new_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub ignore_eos_token: bool,
}

/// A request ready to schedule.
#[derive(Clone, Debug)]
pub struct ValidGenerateRequest {
    pub inputs: String,
    /// Token ids of the (truncated) prompt, when a tokenizer is loaded.
    pub input_ids: Option<Arc<Vec<u32>>>,
    pub input_length: u32,
    pub truncate: u32,
    pub add_special_tokens: bool,
    pub decoder_input_details: bool,
    pub parameters: ValidParameters,
    pub stopping_parameters: ValidStoppingParameters,
    pub top_n_tokens: u32,
    pub adapter_id: Option<String>,
}

/// The final text of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedText {
    pub text: String,
    pub generated_tokens: u32,
    pub finish_reason: FinishReason,
    pub seed: Option<u64>,
}

/// One message of a request's response stream.
#[derive(Clone, Debug)]
pub enum InferStreamResponse {
    /// Prompt tokens with logprobs (only with `decoder_input_details`).
    Prefill(Vec<PrefillToken>),
    /// A generated token that is not the last.
    Intermediate {
        token: Token,
        top_tokens: Vec<Token>,
    },
    /// The last token, with the full text.
    End {
        token: Token,
        top_tokens: Vec<Token>,
        generated_text: GeneratedText,
        /// When the batch holding the request started.
        start: Instant,
        /// When the request entered the queue.
        queued: Instant,
    },
}
