//! SageMaker's `/invocations` bodies: a generate-style, chat or completion request, answered in
//! the matching shape.

use super::{ChatCompletion, ChatRequest, GenerateParameters, GenerateResponse};
use serde::{Deserialize, Serialize};

/// Body of `/invocations`; the server tries generate, then chat, then completion.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum InvocationsRequest {
    /// `{"inputs", "parameters"}` as on `POST /`. Streaming is not offered here: SageMaker
    /// real-time endpoints answer with one body.
    Generate {
        /// The prompt.
        inputs: String,
        /// Generation parameters.
        #[serde(default)]
        parameters: GenerateParameters,
    },
    /// An OpenAI chat request.
    Chat(ChatRequest),
    /// Any other JSON body (e.g. an OpenAI completion request), sent as is.
    Raw(serde_json::Value),
}

/// Answer of `/invocations`, by the shape of the request.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum InvocationsResponse {
    /// Generate-style requests: TGI answers `[GenerateResponse]` as on `POST /`.
    Generate(Vec<GenerateResponse>),
    /// The same as a single object (some servers unwrap the array).
    GenerateOne(GenerateResponse),
    /// Chat requests.
    Chat(ChatCompletion),
    /// Anything else (e.g. a `text_completion`).
    Other(serde_json::Value),
}

impl InvocationsResponse {
    /// The generated text of a generate or chat answer (first sequence or choice).
    pub fn text(&self) -> Option<&str> {
        match self {
            InvocationsResponse::Generate(v) => v.first().map(|g| g.generated_text.as_str()),
            InvocationsResponse::GenerateOne(g) => Some(&g.generated_text),
            InvocationsResponse::Chat(c) => c.choices.first()?.message.content.as_deref(),
            InvocationsResponse::Other(v) => v.pointer("/choices/0/text")?.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shapes() {
        let r: InvocationsResponse = serde_json::from_str(r#"[{"generated_text":"a"}]"#).unwrap();
        assert_eq!(r.text(), Some("a"));
        let r: InvocationsResponse = serde_json::from_str(r#"{"generated_text":"b"}"#).unwrap();
        assert!(matches!(r, InvocationsResponse::GenerateOne(_)));
        let r: InvocationsResponse = serde_json::from_str(
            r#"{"object":"text_completion","choices":[{"index":0,"text":"c","logprobs":null,"finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(r.text(), Some("c"));
    }

    #[test]
    fn generate_body_shape() {
        let r = InvocationsRequest::Generate {
            inputs: "x".into(),
            parameters: GenerateParameters {
                max_new_tokens: Some(2),
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"inputs":"x","parameters":{"do_sample":false,"max_new_tokens":2,"details":false}})
        );
    }
}
