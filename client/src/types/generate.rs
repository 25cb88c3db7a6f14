//! Bodies of `/generate`, `/generate_stream` and `/info`.
//!
//! Requests leave unset options out of the JSON so the server's defaults apply; responses
//! accept TGI's omissions (`details`, `top_tokens`, `best_of_sequences`).

use serde::{Deserialize, Serialize};

/// Structured-generation constraint: `{"type": "json"|"regex"|"json_schema", "value": ...}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", content = "value")]
pub enum GrammarType {
    /// A JSON schema (object) or a JSON string holding one.
    #[serde(rename = "json", alias = "json_object")]
    Json(serde_json::Value),
    /// A regular expression the output must match.
    #[serde(rename = "regex")]
    Regex(String),
    /// OpenAI-style `{"name"?, "schema"}`.
    #[serde(rename = "json_schema")]
    JsonSchema {
        /// Optional schema name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The schema itself.
        schema: serde_json::Value,
    },
}

/// Generation parameters; every field is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct GenerateParameters {
    /// Generate this many sampled sequences and return the best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<usize>,
    /// Softmax temperature (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Repetition penalty (> 0; 1.0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// Frequency penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Keep the k most likely tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    /// Nucleus sampling mass in (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Typical sampling mass in (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typical_p: Option<f32>,
    /// Sample instead of greedy decoding.
    #[serde(default)]
    pub do_sample: bool,
    /// Tokens to generate (server default: the rest of `max_total_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<u32>,
    /// Prepend the prompt to the generated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_full_text: Option<bool>,
    /// Stop sequences (kept in the output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Keep only the last `truncate` prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<usize>,
    /// Watermark the output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watermark: bool,
    /// Return generation details.
    #[serde(default)]
    pub details: bool,
    /// Return prompt token details (not with streaming).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decoder_input_details: bool,
    /// Random seed for sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Return this many most likely tokens at each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n_tokens: Option<u32>,
    /// Constrain the output to a JSON schema or a regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<GrammarType>,
    /// LoRA adapter to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_id: Option<String>,
}

/// Body of `/generate` and `/generate_stream`.
///
/// `parameters` is always sent, so an unset `do_sample` means greedy decoding (TGI samples
/// only when the whole `parameters` object is missing).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct GenerateRequest {
    /// The prompt.
    pub inputs: String,
    /// Generation parameters.
    #[serde(default)]
    pub parameters: GenerateParameters,
}

impl GenerateRequest {
    /// A request for `inputs` with default parameters.
    pub fn new(inputs: impl Into<String>) -> GenerateRequest {
        GenerateRequest {
            inputs: inputs.into(),
            parameters: GenerateParameters::default(),
        }
    }

    /// Sets `max_new_tokens`.
    pub fn max_new_tokens(mut self, n: u32) -> GenerateRequest {
        self.parameters.max_new_tokens = Some(n);
        self
    }

    /// Asks for `details` in the answer.
    pub fn details(mut self, details: bool) -> GenerateRequest {
        self.parameters.details = details;
        self
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_new_tokens` reached.
    Length,
    /// The model emitted its end-of-sequence token.
    EosToken,
    /// A stop sequence matched.
    StopSequence,
}

/// One prompt token (`logprob` is null for the first).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct PrefillToken {
    /// Token id.
    pub id: u32,
    /// Token text.
    pub text: String,
    /// Log-probability, null when unknown.
    pub logprob: Option<f32>,
}

/// One generated token.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Token {
    /// Token id.
    pub id: u32,
    /// Token text.
    pub text: String,
    /// Log-probability.
    pub logprob: Option<f32>,
    /// Whether it is a special token (e.g. EOS).
    pub special: bool,
}

/// A non-winning `best_of` sequence.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct BestOfSequence {
    /// Its text.
    pub generated_text: String,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Number of tokens generated.
    pub generated_tokens: u32,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Prompt tokens.
    #[serde(default)]
    pub prefill: Vec<PrefillToken>,
    /// Generated tokens.
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// Most likely tokens at each step (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Vec<Token>>,
}

/// `details` of a `/generate` answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Details {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Number of tokens generated.
    pub generated_tokens: u32,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Prompt tokens (with `decoder_input_details`).
    #[serde(default)]
    pub prefill: Vec<PrefillToken>,
    /// Generated tokens.
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// Most likely tokens at each step (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Vec<Token>>,
    /// The other `best_of` sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of_sequences: Option<Vec<BestOfSequence>>,
}

/// Answer of `/generate`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct GenerateResponse {
    /// The generated text (prompt prepended with `return_full_text`).
    pub generated_text: String,
    /// Present when `details` or `decoder_input_details` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

/// `details` of the final `/generate_stream` event.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StreamDetails {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Number of tokens generated.
    pub generated_tokens: u32,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Prompt length in tokens.
    #[serde(default)]
    pub input_length: u32,
}

/// One `/generate_stream` event (one per generated token).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StreamResponse {
    /// 1-based position of this token.
    pub index: u32,
    /// The token.
    pub token: Token,
    /// Most likely tokens at this step (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Token>,
    /// The whole text, on the last event only.
    #[serde(default)]
    pub generated_text: Option<String>,
    /// Details, on the last event only and when asked for.
    #[serde(default)]
    pub details: Option<StreamDetails>,
}

/// Answer of `/info`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Info {
    /// The served model.
    pub model_id: String,
    /// Its revision, when known.
    #[serde(default)]
    pub model_sha: Option<String>,
    /// Its hub pipeline tag, when known.
    #[serde(default)]
    pub model_pipeline_tag: Option<String>,
    /// `--max-concurrent-requests`.
    pub max_concurrent_requests: usize,
    /// `--max-best-of`.
    pub max_best_of: usize,
    /// `--max-stop-sequences`.
    pub max_stop_sequences: usize,
    /// `--max-input-tokens`.
    pub max_input_tokens: usize,
    /// `--max-total-tokens`.
    pub max_total_tokens: usize,
    /// `--validation-workers`.
    pub validation_workers: usize,
    /// `--max-client-batch-size`.
    pub max_client_batch_size: usize,
    /// Router name (`text-generation-router`).
    pub router: String,
    /// Server version.
    pub version: String,
    /// Build commit, when known.
    #[serde(default)]
    pub sha: Option<String>,
    /// Docker image label, when set.
    #[serde(default)]
    pub docker_label: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_leaves_unset_options_out() {
        let r = GenerateRequest::new("Hi").max_new_tokens(4);
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some(
                r#"{"inputs":"Hi","parameters":{"do_sample":false,"max_new_tokens":4,"details":false}}"#
            )
        );
    }

    #[test]
    fn response_with_tgi_omissions_and_null_logprob() {
        let g: GenerateResponse = serde_json::from_str(
            r#"{"generated_text":"x","details":{"finish_reason":"eos_token","generated_tokens":1,"seed":null,
                "prefill":[{"id":0,"text":"<s>","logprob":null}],
                "tokens":[{"id":2,"text":"x","logprob":-0.1,"special":false}]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let d = g.details.unwrap_or_else(|| panic!("details"));
        assert_eq!(d.finish_reason, FinishReason::EosToken);
        assert_eq!(d.prefill[0].logprob, None);
        assert!(d.best_of_sequences.is_none() && d.top_tokens.is_empty());
        let g: GenerateResponse =
            serde_json::from_str(r#"{"generated_text":"x"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(g.details.is_none());
    }

    #[test]
    fn grammar_serializes_as_tgi() {
        let g = GrammarType::JsonSchema {
            name: None,
            schema: serde_json::json!({"type": "object"}),
        };
        assert_eq!(
            serde_json::to_value(&g).ok(),
            Some(serde_json::json!({"type":"json_schema","value":{"schema":{"type":"object"}}}))
        );
    }
}
