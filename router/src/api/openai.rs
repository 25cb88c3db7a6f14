//! Types of the OpenAI-compatible routes (`/v1/chat/completions`, `/v1/completions`, `/v1/models`).

use super::GrammarType;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// A message content part.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageChunk {
    Text { text: String },
    ImageUrl { image_url: Url },
}

/// An image reference.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Url {
    pub url: String,
}

/// Message content: a string or a list of parts.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    SingleText(String),
    MultipleChunks(Vec<MessageChunk>),
}

impl MessageContent {
    /// Flattens the parts to text; images become `![](url)` as in TGI.
    pub fn to_text(&self) -> String {
        match self {
            MessageContent::SingleText(text) => text.clone(),
            MessageContent::MultipleChunks(chunks) => chunks
                .iter()
                .map(|chunk| match chunk {
                    MessageChunk::Text { text } => text.clone(),
                    MessageChunk::ImageUrl { image_url } => format!("![]({})", image_url.url),
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A function call made by the assistant.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub r#type: String,
    pub function: FunctionCall,
}

/// The function part of a tool call.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct FunctionCall {
    #[serde(default)]
    pub description: Option<String>,
    pub name: String,
    #[serde(alias = "parameters")]
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

/// One chat message.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A tool definition.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Tool {
    pub r#type: String,
    pub function: FunctionDefinition,
}

/// A function definition inside a tool.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct FunctionDefinition {
    #[serde(default)]
    pub description: Option<String>,
    pub name: String,
    #[serde(alias = "parameters", default)]
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Body of `/v1/chat/completions`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Value>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default, alias = "max_completion_tokens")]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_prompt: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    #[serde(default)]
    pub response_format: Option<GrammarType>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// Token accounting.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// A top logprob entry.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionTopLogprob {
    pub token: String,
    pub logprob: f32,
}

/// A logprob entry.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionLogprob {
    pub token: String,
    pub logprob: f32,
    pub top_logprobs: Vec<ChatCompletionTopLogprob>,
}

/// `logprobs` of a choice.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionLogprobs {
    pub content: Vec<ChatCompletionLogprob>,
}

/// The assistant message of a non-stream answer.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct OutputMessage {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One choice of a non-stream chat answer.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionComplete {
    pub index: u32,
    pub message: OutputMessage,
    pub logprobs: Option<ChatCompletionLogprobs>,
    pub finish_reason: String,
}

/// Non-stream chat answer.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub object: String,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChatCompletionComplete>,
    pub usage: Usage,
}

/// Function part of a streamed tool-call delta (`name` only on the first one).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct DeltaFunction {
    pub name: Option<String>,
    pub arguments: String,
}

/// One streamed tool call.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct DeltaToolCall {
    pub index: u32,
    pub id: String,
    pub r#type: String,
    pub function: DeltaFunction,
}

/// Delta of a chat stream chunk: text, or tool-call fragments.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ChatCompletionDelta {
    Chat {
        role: String,
        content: String,
    },
    Tool {
        role: String,
        tool_calls: Vec<DeltaToolCall>,
    },
}

/// One choice of a chat stream chunk.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionChoice {
    pub index: u32,
    pub delta: ChatCompletionDelta,
    pub logprobs: Option<ChatCompletionLogprobs>,
    pub finish_reason: Option<String>,
}

/// One chat stream chunk.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub object: String,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChatCompletionChoice>,
    pub usage: Option<Usage>,
}

/// `prompt`: one string or a non-empty list of strings.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Prompt(pub Vec<String>);

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::One(s) => Ok(Prompt(vec![s])),
            Raw::Many(v) if v.is_empty() => Err(serde::de::Error::custom(
                "Empty array detected. Do not use an empty array for the prompt.",
            )),
            Raw::Many(v) => Ok(Prompt(v)),
        }
    }
}

/// Body of `/v1/completions`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: Prompt,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
}

/// One choice of a completion answer or event.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CompletionComplete {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<Vec<f32>>,
    pub finish_reason: String,
}

/// Non-stream completion answer and the final stream event of each prompt.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CompletionFinal {
    pub object: String,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<CompletionComplete>,
    pub usage: Usage,
}

/// Per-token completion stream event.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CompletionChunk {
    pub object: String,
    pub id: String,
    pub created: u64,
    pub choices: Vec<CompletionComplete>,
    pub model: String,
    pub system_fingerprint: String,
}

/// One entry of `/v1/models`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// Answer of `/v1/models`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ModelsInfo {
    pub object: String,
    pub data: Vec<ModelInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_string_or_list() {
        let r: CompletionRequest = serde_json::from_str(r#"{"prompt":"a"}"#).unwrap();
        assert_eq!(r.prompt.0, vec!["a"]);
        let r: CompletionRequest = serde_json::from_str(r#"{"prompt":["a","b"]}"#).unwrap();
        assert_eq!(r.prompt.0.len(), 2);
        assert!(serde_json::from_str::<CompletionRequest>(r#"{"prompt":[]}"#).is_err());
    }

    #[test]
    fn message_content_flattens_images() {
        let m: Message = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"hi "},{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}"#,
        )
        .unwrap();
        assert_eq!(m.content.unwrap().to_text(), "hi ![](http://x/y.png)");
    }

    #[test]
    fn max_completion_tokens_alias() {
        let r: ChatRequest =
            serde_json::from_str(r#"{"messages":[],"max_completion_tokens":7}"#).unwrap();
        assert_eq!(r.max_tokens, Some(7));
    }
}
