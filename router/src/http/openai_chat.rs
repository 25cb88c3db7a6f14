//! `POST /v1/chat/completions`: chat template, tool grammar, stream and non-stream answers.

use super::generate::{generate_internal, stream_headers, stream_responses};
use super::server::AppState;
use super::sse;
use super::tool_stream::{next_tool_call_id, ToolEvent, ToolStream};
use crate::api::{
    ChatCompletion, ChatCompletionChoice, ChatCompletionChunk, ChatCompletionComplete,
    ChatCompletionDelta, ChatCompletionLogprob, ChatCompletionLogprobs, ChatCompletionTopLogprob,
    ChatRequest, DeltaToolCall, FunctionCall, GenerateParameters, GenerateRequest, GrammarType,
    OutputMessage, Token, Tool, ToolCall, Usage,
};
use crate::chat_template::DEFAULT_TOOL_PROMPT;
use crate::error::RouterError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};

/// Seconds since the Unix epoch (`created`).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A chat request turned into a generate request.
pub(crate) struct PreparedChat {
    pub request: GenerateRequest,
    /// Id of a streamed tool call.
    pub tool_call_id: String,
    pub model: String,
    pub using_tools: bool,
    pub logprobs: bool,
    pub include_usage: bool,
}

/// `temperature == 0` means greedy; any other value (or none) samples, as in TGI.
pub(crate) fn sampling(temperature: Option<f32>) -> (bool, Option<f32>) {
    match temperature {
        Some(0.0) => (false, None),
        other => (true, other),
    }
}

/// Tools selected by `tool_choice` (`None`: no tools); `auto` adds `no_tool`.
fn select_tools(
    tools: &[Tool],
    choice: &Option<Value>,
) -> Result<Option<(Vec<Tool>, bool)>, RouterError> {
    let by_name = |name: &str| -> Result<Option<(Vec<Tool>, bool)>, RouterError> {
        let tool = tools
            .iter()
            .find(|t| t.function.name == name)
            .cloned()
            .ok_or_else(|| RouterError::Tool(format!("Tool with name {name} not found")))?;
        Ok(Some((vec![tool], false)))
    };
    match choice {
        None => Ok(Some((tools.to_vec(), true))),
        Some(Value::String(s)) if s == "auto" => Ok(Some((tools.to_vec(), true))),
        Some(Value::String(s)) if s == "none" => Ok(None),
        Some(Value::String(s)) if s == "required" => Ok(Some((tools.to_vec(), false))),
        Some(Value::String(name)) => by_name(name),
        Some(Value::Object(o)) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(|n| n.as_str())
        {
            Some(name) => by_name(name),
            None => Err(RouterError::Tool("Invalid tool_choice".to_string())),
        },
        Some(_) => Err(RouterError::Tool("Invalid tool_choice".to_string())),
    }
}

/// TGI's tool grammar: one `$functions` entry per tool, `function` is any of them.
fn tool_grammar(tools: &[Tool], with_no_tool: bool) -> Value {
    let mut functions = serde_json::Map::new();
    let mut refs = Vec::new();
    let mut add = |name: &str, description: Option<&str>, params: &Value| {
        let mut properties = serde_json::Map::new();
        properties.insert("_name".into(), json!({"type": "string", "const": name}));
        if let Some(p) = params.get("properties").and_then(|p| p.as_object()) {
            properties.extend(p.clone());
        }
        let mut required = vec![json!("_name")];
        if let Some(r) = params.get("required").and_then(|r| r.as_array()) {
            required.extend(r.iter().cloned());
        }
        functions.insert(
            name.to_string(),
            json!({"description": description, "properties": properties, "required": required, "type": "object"}),
        );
        refs.push(json!({"$ref": format!("#/$functions/{name}")}));
    };
    for tool in tools {
        add(
            &tool.function.name,
            tool.function.description.as_deref(),
            &tool.function.arguments,
        );
    }
    if with_no_tool {
        add(
            "no_tool",
            Some("Open ended response with no specific tool selected"),
            &json!({"properties": {"content": {"type": "string", "description": "The response content"}}, "required": ["content"]}),
        );
    }
    json!({"$functions": functions, "properties": {"function": {"anyOf": refs}}})
}

/// Renders the template and maps OpenAI parameters to TGI's.
pub(crate) fn prepare_chat(
    state: &AppState,
    req: ChatRequest,
) -> Result<PreparedChat, RouterError> {
    let model = match &req.model {
        Some(m) if m != "tgi" => m.clone(),
        _ => state.info.model_id.clone(),
    };
    let adapter_id = req.model.clone().filter(|m| m != "tgi");
    let selected = match &req.tools {
        Some(tools) if !tools.is_empty() => select_tools(tools, &req.tool_choice)?,
        _ => None,
    };
    if selected.is_some() && req.response_format.is_some() {
        return Err(RouterError::Tool(
            "Grammar and tools are mutually exclusive".to_string(),
        ));
    }
    let (template_tools, grammar) = match &selected {
        Some((tools, with_no_tool)) => (
            Some((
                tools.clone(),
                req.tool_prompt
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOOL_PROMPT.to_string()),
            )),
            Some(GrammarType::Json(tool_grammar(tools, *with_no_tool))),
        ),
        None => (None, req.response_format.clone()),
    };
    let inputs = state
        .infer
        .apply_chat_template(req.messages.clone(), template_tools)?;
    let (do_sample, temperature) = sampling(req.temperature);
    let logprobs = req.logprobs.unwrap_or(false);
    Ok(PreparedChat {
        tool_call_id: next_tool_call_id(&req.messages),
        request: GenerateRequest {
            inputs,
            parameters: GenerateParameters {
                temperature,
                repetition_penalty: req.presence_penalty.map(|p| p + 2.0),
                frequency_penalty: req.frequency_penalty,
                top_p: req.top_p,
                do_sample,
                max_new_tokens: req.max_tokens,
                stop: req.stop.clone().unwrap_or_default(),
                details: true,
                seed: req.seed,
                top_n_tokens: req.top_logprobs,
                grammar,
                adapter_id,
                ..Default::default()
            },
        },
        model,
        using_tools: selected.is_some(),
        logprobs,
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

fn logprob_entry(token: &Token, top: &[Token]) -> ChatCompletionLogprob {
    ChatCompletionLogprob {
        token: token.text.clone(),
        logprob: token.logprob,
        top_logprobs: top
            .iter()
            .map(|t| ChatCompletionTopLogprob {
                token: t.text.clone(),
                logprob: t.logprob,
            })
            .collect(),
    }
}

/// Parses `{"function": {"_name": ..., ...}}` into a tool call (or plain content for `no_tool`).
fn parse_tool_output(text: &str) -> Result<OutputMessage, RouterError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RouterError::Tool(format!("Failed to parse generated text: {e} {text:?}")))?;
    let mut function = value
        .get("function")
        .and_then(|f| f.as_object())
        .cloned()
        .ok_or_else(|| {
            RouterError::Tool(format!(
                "Failed to parse generated text: no function {text:?}"
            ))
        })?;
    let name = function
        .remove("_name")
        .and_then(|n| n.as_str().map(str::to_string))
        .unwrap_or_default();
    if name == "no_tool" {
        let content = function
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        return Ok(OutputMessage {
            role: "assistant".into(),
            content: Some(content.to_string()),
            tool_calls: None,
        });
    }
    let arguments = Value::Object(function).to_string();
    Ok(OutputMessage {
        role: "assistant".into(),
        content: None,
        tool_calls: Some(vec![ToolCall {
            id: "0".into(),
            r#type: "function".into(),
            function: FunctionCall {
                description: None,
                name,
                arguments: Value::String(arguments),
            },
        }]),
    })
}

/// OpenAI chat completions (stream or not).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "Text Generation Inference",
    request_body = ChatRequest,
    responses((status = 200, body = ChatCompletion), (status = 422, body = crate::api::ErrorResponse)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Json(req): Json<ChatRequest>,
) -> Response {
    metrics::counter!("tgi_request_count").increment(1);
    let stream = req.stream;
    let prepared = match prepare_chat(&state, req) {
        Ok(p) => p,
        Err(err) => return err.into_response(),
    };
    if stream {
        chat_stream(state, prepared)
    } else {
        chat_once(state, prepared).await
    }
}

async fn chat_once(state: AppState, p: PreparedChat) -> Response {
    let (headers, input_length, response) = match generate_internal(&state, p.request, false).await
    {
        Ok(r) => r,
        Err(err) => return err.into_response(),
    };
    let Some(details) = response.details else {
        return RouterError::IncompleteGeneration.into_response();
    };
    let message = if p.using_tools {
        match parse_tool_output(&response.generated_text) {
            Ok(m) => m,
            Err(err) => return err.into_response(),
        }
    } else {
        OutputMessage {
            role: "assistant".into(),
            content: Some(response.generated_text),
            tool_calls: None,
        }
    };
    let logprobs = p.logprobs.then(|| ChatCompletionLogprobs {
        content: details
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                logprob_entry(
                    t,
                    details.top_tokens.get(i).map(Vec::as_slice).unwrap_or(&[]),
                )
            })
            .collect(),
    });
    let body = ChatCompletion {
        object: "chat.completion".into(),
        id: String::new(),
        created: now_secs(),
        model: p.model,
        system_fingerprint: state.system_fingerprint.clone(),
        choices: vec![ChatCompletionComplete {
            index: 0,
            message,
            logprobs,
            finish_reason: details.finish_reason.openai().to_string(),
        }],
        usage: Usage {
            prompt_tokens: input_length,
            completion_tokens: details.generated_tokens,
            total_tokens: input_length + details.generated_tokens,
        },
    };
    (headers, Json(body)).into_response()
}

fn chat_stream(state: AppState, p: PreparedChat) -> Response {
    let headers = stream_headers(&state, &p.request.inputs);
    let fingerprint = state.system_fingerprint.clone();
    let model = p.model.clone();
    let (logprobs, include_usage, tool_call_id) = (p.logprobs, p.include_usage, p.tool_call_id);
    let mut tools = p.using_tools.then(ToolStream::default);
    let mut responses = stream_responses(state, p.request, false);
    let chunk =
        move |choices: Vec<ChatCompletionChoice>, usage: Option<Usage>| ChatCompletionChunk {
            object: "chat.completion.chunk".into(),
            id: String::new(),
            created: now_secs(),
            model: model.clone(),
            system_fingerprint: fingerprint.clone(),
            choices,
            usage,
        };
    let choice = |delta, logprobs, finish_reason| ChatCompletionChoice {
        index: 0,
        delta,
        logprobs,
        finish_reason,
    };
    let events = async_stream::stream! {
        while let Some(item) = responses.next().await {
            let r = match item {
                Err(err) => { yield sse::openai_error_event(&err); return; }
                Ok(r) => r,
            };
            let finish = r.details.as_ref().map(|d| d.finish_reason.openai().to_string());
            match tools.as_mut() {
                None => {
                    let content = if r.token.special { String::new() } else { r.token.text.clone() };
                    let lp = logprobs.then(|| ChatCompletionLogprobs { content: vec![logprob_entry(&r.token, &r.top_tokens)] });
                    let delta = ChatCompletionDelta::Chat { role: "assistant".into(), content };
                    yield sse::json_event(&chunk(vec![choice(delta, lp, finish.clone())], None));
                }
                Some(parser) => {
                    let mut out = if r.token.special { vec![] } else { parser.push(&r.token.text) };
                    if finish.is_some() {
                        out.extend(parser.finish());
                        if out.is_empty() {
                            out.push(ToolEvent::Call(crate::api::DeltaFunction { name: None, arguments: String::new() }));
                        }
                    }
                    let n = out.len();
                    for (k, event) in out.into_iter().enumerate() {
                        let delta = match event {
                            ToolEvent::Call(function) => ChatCompletionDelta::Tool {
                                role: "assistant".into(),
                                tool_calls: vec![DeltaToolCall { index: 0, id: tool_call_id.clone(), r#type: "function".into(), function }],
                            },
                            ToolEvent::Content(content) => ChatCompletionDelta::Chat { role: "assistant".into(), content },
                        };
                        let finish_reason = if k + 1 == n { finish.clone() } else { None };
                        yield sse::json_event(&chunk(vec![choice(delta, None, finish_reason)], None));
                    }
                }
            }
            if let Some(d) = r.details {
                if include_usage {
                    let usage = Usage {
                        prompt_tokens: d.input_length,
                        completion_tokens: d.generated_tokens,
                        total_tokens: d.input_length + d.generated_tokens,
                    };
                    yield sse::json_event(&chunk(vec![], Some(usage)));
                }
                yield sse::done_event();
                return;
            }
        }
    };
    sse::response(headers, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_zero_is_greedy() {
        assert_eq!(sampling(Some(0.0)), (false, None));
        assert_eq!(sampling(Some(0.5)), (true, Some(0.5)));
        assert_eq!(sampling(None), (true, None));
    }

    #[test]
    fn tool_grammar_shape_and_parse() {
        let tools: Vec<Tool> = serde_json::from_value(json!([{"type":"function","function":{
            "name":"get_weather","description":"w",
            "parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}]))
        .unwrap();
        let g = tool_grammar(&tools, true);
        assert_eq!(
            g["$functions"]["get_weather"]["required"],
            json!(["_name", "location"])
        );
        assert_eq!(
            g["properties"]["function"]["anyOf"][1],
            json!({"$ref": "#/$functions/no_tool"})
        );
        let m = parse_tool_output(r#"{"function":{"_name":"get_weather","location":"Paris"}}"#)
            .unwrap();
        let call = &m.tool_calls.unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(call.function.arguments, json!("{\"location\":\"Paris\"}"));
        let m = parse_tool_output(r#"{"function":{"_name":"no_tool","content":"hi"}}"#).unwrap();
        assert_eq!(m.content.as_deref(), Some("hi"));
        assert_eq!(
            parse_tool_output("nope").unwrap_err().error_type(),
            "tool_error"
        );
    }

    #[test]
    fn tool_choice_selection() {
        let tools: Vec<Tool> = serde_json::from_value(
            json!([{"type":"function","function":{"name":"a","arguments":{}}},
            {"type":"function","function":{"name":"b","arguments":{}}}]),
        )
        .unwrap();
        assert!(select_tools(&tools, &Some(json!("none")))
            .unwrap()
            .is_none());
        let (t, no_tool) = select_tools(&tools, &None).unwrap().unwrap();
        assert_eq!((t.len(), no_tool), (2, true));
        let (t, no_tool) = select_tools(
            &tools,
            &Some(json!({"type":"function","function":{"name":"b"}})),
        )
        .unwrap()
        .unwrap();
        assert_eq!((t[0].function.name.as_str(), no_tool), ("b", false));
        assert_eq!(
            select_tools(&tools, &Some(json!("zzz")))
                .unwrap_err()
                .to_string(),
            "Tool error: Tool with name zzz not found"
        );
    }
}
