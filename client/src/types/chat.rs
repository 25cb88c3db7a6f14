//! Bodies of the OpenAI-compatible `/v1/chat/completions` route (request, answer, stream chunk).

use super::GrammarType;
use serde::{Deserialize, Serialize};

/// One part of a multi-part message.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageChunk {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image reference (TGI inlines it as `![](url)`).
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// An image reference.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ImageUrl {
    /// Its URL.
    pub url: String,
}

/// Message content: a string or a list of parts.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<MessageChunk>),
}

/// The function part of a tool call.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    /// Description (TGI sends null).
    #[serde(default)]
    pub description: Option<String>,
    /// Function name.
    pub name: String,
    /// Arguments: a JSON object, or a string holding one.
    pub arguments: serde_json::Value,
}

/// A function call made by the assistant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call.
    pub function: FunctionCall,
}

/// One chat message.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content (absent on assistant tool-call messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Calls the assistant made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A text message with `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// A function definition offered as a tool.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionDefinition {
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its name.
    pub name: String,
    /// JSON schema of its arguments.
    #[serde(alias = "arguments")]
    pub parameters: serde_json::Value,
}

/// A tool definition.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Body of `/v1/chat/completions`. `stream` is set by [`crate::Client::chat`] and
/// [`crate::Client::chat_stream`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChatRequest {
    /// `tgi` (or absent) for the base model; another value selects a LoRA adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Frequency penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Return log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Most likely tokens per position (with `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Presence penalty (TGI uses it as `repetition_penalty - 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Answer as SSE.
    #[serde(default)]
    pub stream: bool,
    /// Random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Temperature (`0.0` means greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Text placed before the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_prompt: Option<String>,
    /// `auto`, `none`, `required`, a function name or `{"type":"function",...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<serde_json::Value>,
    /// Output constraint (exclusive with `tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<GrammarType>,
    /// Stream options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

impl ChatRequest {
    /// A request for `messages` with server defaults.
    pub fn new(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages,
            ..ChatRequest::default()
        }
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, n: u32) -> ChatRequest {
        self.max_tokens = Some(n);
        self
    }

    /// Sets `temperature` (`0.0` means greedy).
    pub fn temperature(mut self, t: f32) -> ChatRequest {
        self.temperature = Some(t);
        self
    }
}

/// Token accounting.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// A top log-probability entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
}

/// A log-probability entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Logprob {
    /// Token text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely alternatives.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// `logprobs` of a choice.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Logprobs {
    /// One entry per token.
    pub content: Vec<Logprob>,
}

/// The assistant message of a non-stream answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct OutputMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text (absent when the model called tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One choice of a non-stream answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatChoice {
    /// Choice index (always 0 on TGI).
    pub index: u32,
    /// The answer.
    pub message: OutputMessage,
    /// Log-probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
    /// `stop`, `length` or `stop_sequence`.
    pub finish_reason: String,
}

/// Non-stream chat answer (`object: "chat.completion"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatCompletion {
    /// `chat.completion`.
    pub object: String,
    /// Always empty on TGI.
    pub id: String,
    /// Unix time.
    pub created: u64,
    /// The model (or adapter) that answered.
    pub model: String,
    /// `{version}-{docker label or native}`.
    pub system_fingerprint: String,
    /// The answers.
    pub choices: Vec<ChatChoice>,
    /// Token accounting.
    pub usage: Usage,
}

/// Function part of a streamed tool-call fragment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DeltaFunction {
    /// The name, on the first fragment only.
    #[serde(default)]
    pub name: Option<String>,
    /// A piece of the arguments JSON.
    #[serde(default)]
    pub arguments: String,
}

/// One streamed tool-call fragment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DeltaToolCall {
    /// Index of the call.
    pub index: u32,
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The fragment.
    pub function: DeltaFunction,
}

/// What a stream chunk adds: text or tool-call fragments.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChatDelta {
    /// `assistant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text (empty for special tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<DeltaToolCall>>,
}

/// One choice of a stream chunk.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatChunkChoice {
    /// Choice index.
    pub index: u32,
    /// The new piece.
    pub delta: ChatDelta,
    /// Log-probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
    /// Set on the last token's chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One chat stream chunk (`object: "chat.completion.chunk"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatCompletionChunk {
    /// `chat.completion.chunk`.
    pub object: String,
    /// Always empty on TGI.
    pub id: String,
    /// Unix time.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// `{version}-{docker label or native}`.
    pub system_fingerprint: String,
    /// One choice per token chunk; empty on the usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Set on the usage chunk (`stream_options.include_usage`).
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_minimal() {
        let r = ChatRequest::new(vec![Message::user("hi")]).max_tokens(3);
        assert_eq!(
            serde_json::to_value(&r).ok(),
            Some(
                serde_json::json!({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":false})
            )
        );
    }

    #[test]
    fn tool_call_answer_parses() {
        let c: ChatCompletion = serde_json::from_str(
            r#"{"object":"chat.completion","id":"","created":1,"model":"m","system_fingerprint":"f",
              "choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"0","type":"function",
              "function":{"description":null,"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
              "logprobs":null,"finish_reason":"stop"}],
              "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        )
        .unwrap();
        let calls = c.choices[0].message.tool_calls.clone().unwrap();
        assert_eq!(calls[0].function.name, "get_weather");
        assert!(c.choices[0].message.content.is_none());
    }
}
