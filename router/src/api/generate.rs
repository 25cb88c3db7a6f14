//! Types of `/generate`, `/generate_stream`, `/`, `/tokenize`, `/info` and the error body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::infer::types::{FinishReason, PrefillToken, Token};

/// Structured-generation constraint (`{"type": ..., "value": ...}`).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(tag = "type", content = "value")]
pub enum GrammarType {
    /// A JSON schema (object) or a JSON string holding one.
    #[serde(rename = "json", alias = "json_object")]
    #[schema(value_type = Object)]
    Json(serde_json::Value),
    /// A regular expression.
    #[serde(rename = "regex")]
    Regex(String),
    /// OpenAI-style `{"name"?, "schema"}`.
    #[serde(rename = "json_schema")]
    JsonSchema(JsonSchemaConfig),
}

/// The value of a `json_schema` grammar.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct JsonSchemaConfig {
    /// Optional schema name.
    #[serde(default)]
    pub name: Option<String>,
    /// The schema itself.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// Generation parameters; every field is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct GenerateParameters {
    /// Generate this many sampled sequences and return the best (highest mean logprob).
    #[serde(default)]
    pub best_of: Option<usize>,
    /// Softmax temperature (> 0).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Repetition penalty (> 0; 1.0 = off).
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Frequency penalty in [-2, 2].
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Keep the k most likely tokens (> 0).
    #[serde(default)]
    pub top_k: Option<i32>,
    /// Nucleus sampling mass in (0, 1).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Typical sampling mass in (0, 1).
    #[serde(default)]
    pub typical_p: Option<f32>,
    /// Sample instead of greedy decoding.
    #[serde(default)]
    pub do_sample: bool,
    /// Tokens to generate (default: the rest of `max_total_tokens`).
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
    /// Prepend the prompt to the generated text.
    #[serde(default)]
    pub return_full_text: Option<bool>,
    /// Stop sequences (kept in the output).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Keep only the last `truncate` prompt tokens.
    #[serde(default)]
    pub truncate: Option<usize>,
    /// Watermark the output (Kirchenbauer et al.).
    #[serde(default)]
    pub watermark: bool,
    /// Return generation details.
    #[serde(default)]
    pub details: bool,
    /// Return prompt token details (non-streaming only).
    #[serde(default)]
    pub decoder_input_details: bool,
    /// Random seed for sampling.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Return this many most likely tokens at each step.
    #[serde(default)]
    pub top_n_tokens: Option<u32>,
    /// Constrain the output to a JSON schema or a regex.
    #[serde(default)]
    pub grammar: Option<GrammarType>,
    /// LoRA adapter to use.
    #[serde(default)]
    pub adapter_id: Option<String>,
}

/// TGI's default when the whole `parameters` object is missing (note `do_sample: true`).
pub fn default_parameters() -> GenerateParameters {
    GenerateParameters {
        do_sample: true,
        ..Default::default()
    }
}

/// Body of `/generate`, `/generate_stream` and `/tokenize`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct GenerateRequest {
    /// The prompt.
    pub inputs: String,
    #[serde(default = "default_parameters")]
    pub parameters: GenerateParameters,
}

/// Body of `POST /` (and the generate form of `/invocations`).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CompatGenerateRequest {
    /// The prompt.
    pub inputs: String,
    #[serde(default = "default_parameters")]
    pub parameters: GenerateParameters,
    /// Answer as SSE when true.
    #[serde(default)]
    pub stream: bool,
}

impl From<CompatGenerateRequest> for GenerateRequest {
    fn from(req: CompatGenerateRequest) -> Self {
        GenerateRequest {
            inputs: req.inputs,
            parameters: req.parameters,
        }
    }
}

/// A non-winning `best_of` sequence.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct BestOfSequence {
    pub generated_text: String,
    pub finish_reason: FinishReason,
    pub generated_tokens: u32,
    pub seed: Option<u64>,
    pub prefill: Vec<PrefillToken>,
    pub tokens: Vec<Token>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Vec<Token>>,
}

/// `details` of a `/generate` answer.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct Details {
    pub finish_reason: FinishReason,
    pub generated_tokens: u32,
    pub seed: Option<u64>,
    pub prefill: Vec<PrefillToken>,
    pub tokens: Vec<Token>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Vec<Token>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of_sequences: Option<Vec<BestOfSequence>>,
}

/// Answer of `/generate`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct GenerateResponse {
    pub generated_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

/// `details` of the final `/generate_stream` event.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct StreamDetails {
    pub finish_reason: FinishReason,
    pub generated_tokens: u32,
    pub seed: Option<u64>,
    pub input_length: u32,
}

/// One `/generate_stream` event.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct StreamResponse {
    pub index: u32,
    pub token: Token,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Token>,
    pub generated_text: Option<String>,
    pub details: Option<StreamDetails>,
}

/// TGI's error body.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: String,
    pub error_type: String,
}

/// One token of `/tokenize` (byte offsets into the input).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub stop: usize,
}

/// Answer of `/chat_tokenize`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatTokenizeResponse {
    pub tokenize_response: Vec<SimpleToken>,
    pub templated_text: String,
}

/// Answer of `/info`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    pub model_sha: Option<String>,
    pub model_pipeline_tag: Option<String>,
    pub max_concurrent_requests: usize,
    pub max_best_of: usize,
    pub max_stop_sequences: usize,
    pub max_input_tokens: usize,
    pub max_total_tokens: usize,
    pub validation_workers: usize,
    pub max_client_batch_size: usize,
    pub router: &'static str,
    pub version: &'static str,
    pub sha: Option<&'static str>,
    pub docker_label: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parameters_defaults_to_sampling_quirk() {
        let r: GenerateRequest = serde_json::from_str(r#"{"inputs":"a"}"#).unwrap();
        assert!(r.parameters.do_sample);
        let r: GenerateRequest = serde_json::from_str(r#"{"inputs":"a","parameters":{}}"#).unwrap();
        assert!(!r.parameters.do_sample);
    }

    #[test]
    fn grammar_forms_parse() {
        let p: GenerateParameters =
            serde_json::from_str(r#"{"grammar":{"type":"json_object","value":{"properties":{}}}}"#)
                .unwrap();
        assert!(matches!(p.grammar, Some(GrammarType::Json(_))));
        let p: GenerateParameters =
            serde_json::from_str(r#"{"grammar":{"type":"regex","value":"a+"}}"#).unwrap();
        assert_eq!(p.grammar, Some(GrammarType::Regex("a+".into())));
    }

    #[test]
    fn nan_logprob_serializes_as_null_and_omissions() {
        let t = PrefillToken {
            id: 1,
            text: "a".into(),
            logprob: f32::NAN,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":1,"text":"a","logprob":null}"#
        );
        let r = GenerateResponse {
            generated_text: "x".into(),
            details: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"generated_text":"x"}"#
        );
    }
}
