//! Chat templates from `tokenizer_config.json`, rendered with minijinja and TGI's variables
//! (`messages`, `bos_token`, `eos_token`, `add_generation_prompt`, `tools`).

use crate::api::{Message, Tool};
use crate::error::RouterError;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;

/// TGI's default tool prompt.
pub const DEFAULT_TOOL_PROMPT: &str = "Given the functions available, please respond with a JSON for a function call with its proper arguments that best answers the given prompt. Respond in the format {name: function name, parameters: dictionary of argument name and its value}.Do not use variables.";

/// A message as the template sees it (content flattened to text).
#[derive(Clone, Debug, Serialize)]
struct TemplateMessage {
    role: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
}

#[derive(Serialize)]
struct TemplateInputs<'a> {
    messages: Vec<TemplateMessage>,
    bos_token: Option<&'a str>,
    eos_token: Option<&'a str>,
    add_generation_prompt: bool,
    tools: Option<Vec<Tool>>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    uses_tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::SyntaxError, message))
}

fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    Ok(chrono::Local::now().format(&format).to_string())
}

impl ChatTemplate {
    /// Compiles `template`; errors carry minijinja's message.
    pub fn new(
        template: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, RouterError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        let uses_tools = template.contains("tools");
        env.add_template_owned("chat", template)?;
        Ok(ChatTemplate {
            env,
            bos_token,
            eos_token,
            uses_tools,
        })
    }

    /// Renders the prompt. With tools and a template that ignores them, the tool list and
    /// prompt are appended to the last message as TGI does.
    pub fn apply(
        &self,
        messages: Vec<Message>,
        tools: Option<(Vec<Tool>, String)>,
    ) -> Result<String, RouterError> {
        let mut messages: Vec<TemplateMessage> = messages.into_iter().map(flatten).collect();
        let mut template_tools = None;
        if let Some((tools, tool_prompt)) = tools {
            if self.uses_tools {
                template_tools = Some(tools);
            } else {
                let tools_json =
                    serde_json::to_string(&tools).map_err(|e| RouterError::Tool(e.to_string()))?;
                if let Some(last) = messages.last_mut() {
                    last.content
                        .push_str(&format!("\n---\n{tools_json}\n{tool_prompt}"));
                }
            }
        }
        let final_message = messages.last().cloned();
        let template = self.env.get_template("chat")?;
        let mut rendered = template.render(TemplateInputs {
            messages,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
            add_generation_prompt: true,
            tools: template_tools,
        })?;
        // Continue the final assistant message instead of opening a new turn.
        if let Some(last) = final_message {
            if last.role == "assistant" && !last.content.is_empty() {
                if let Some(i) = rendered.rfind(&last.content) {
                    rendered.truncate(i + last.content.len());
                }
            }
        }
        Ok(rendered)
    }
}

fn flatten(message: Message) -> TemplateMessage {
    let content = match (&message.content, &message.tool_calls) {
        (Some(content), _) => content.to_text(),
        (None, Some(calls)) => serde_json::to_string(calls).unwrap_or_default(),
        (None, None) => String::new(),
    };
    TemplateMessage {
        role: message.role,
        content,
        tool_call_id: message.tool_call_id,
    }
}

/// Reads `bos_token`/`eos_token` that may be plain strings or `{"content": ...}` objects.
pub fn token_string(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Extracts the template from a `tokenizer_config.json` value (string, or list with `default`).
pub fn template_from_config(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// Builds the template from a parsed `tokenizer_config.json`, if it has one.
pub fn from_tokenizer_config(
    config: &serde_json::Value,
) -> Result<Option<ChatTemplate>, RouterError> {
    let Some(template) = template_from_config(config) else {
        return Ok(None);
    };
    ChatTemplate::new(
        template,
        token_string(config.get("bos_token")),
        token_string(config.get("eos_token")),
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> Message {
        serde_json::from_value(serde_json::json!({"role": role, "content": content})).unwrap()
    }

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML.into(), None, Some("<|im_end|>".into())).unwrap();
        let out = t
            .apply(vec![msg("system", "be nice"), msg("user", "hi")], None)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nbe nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn bos_eos_and_pycompat() {
        let tpl = "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new(tpl.into(), Some("<s>".into()), Some("</s>".into())).unwrap();
        assert_eq!(
            t.apply(vec![msg("user", "  hi  ")], None).unwrap(),
            "<s>HI</s>"
        );
    }

    #[test]
    fn raise_exception_becomes_template_error() {
        let tpl = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}ok";
        let t = ChatTemplate::new(tpl.into(), None, None).unwrap();
        let err = t.apply(vec![msg("assistant", "x")], None).unwrap_err();
        assert_eq!(err.error_type(), "template_error");
        assert!(
            err.to_string()
                .contains("Conversation roles must alternate"),
            "{err}"
        );
        assert_eq!(t.apply(vec![msg("user", "x")], None).unwrap(), "ok");
    }

    #[test]
    fn final_assistant_message_is_continued() {
        let t = ChatTemplate::new(CHATML.into(), None, None).unwrap();
        let out = t
            .apply(vec![msg("user", "hi"), msg("assistant", "Hello the")], None)
            .unwrap();
        assert!(out.ends_with("<|im_start|>assistant\nHello the"), "{out}");
    }

    #[test]
    fn tools_appended_when_template_ignores_them() {
        let t = ChatTemplate::new(CHATML.into(), None, None).unwrap();
        let tools: Vec<Tool> = serde_json::from_value(serde_json::json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ]))
        .unwrap();
        let out = t
            .apply(
                vec![msg("user", "weather?")],
                Some((tools, "use tools".into())),
            )
            .unwrap();
        assert!(
            out.contains("weather?\n---\n[{\"type\":\"function\""),
            "{out}"
        );
        assert!(out.contains("get_weather"));
        assert!(out.contains("\nuse tools<|im_end|>"));
    }

    #[test]
    fn tools_variable_used_by_template() {
        let tpl = "{% if tools %}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% endif %}{{ messages[0].content }}";
        let t = ChatTemplate::new(tpl.into(), None, None).unwrap();
        let tools: Vec<Tool> = serde_json::from_value(serde_json::json!([
            {"type": "function", "function": {"name": "f", "arguments": {}}}
        ]))
        .unwrap();
        assert_eq!(
            t.apply(vec![msg("user", "q")], Some((tools, String::new())))
                .unwrap(),
            "[f]q"
        );
    }

    #[test]
    fn config_parsing() {
        let cfg = serde_json::json!({
            "chat_template": [{"name": "default", "template": "x"}, {"name": "tool_use", "template": "y"}],
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>"
        });
        assert_eq!(template_from_config(&cfg).as_deref(), Some("x"));
        assert_eq!(token_string(cfg.get("bos_token")).as_deref(), Some("<s>"));
        assert_eq!(token_string(cfg.get("eos_token")).as_deref(), Some("</s>"));
        assert!(from_tokenizer_config(&serde_json::json!({}))
            .unwrap()
            .is_none());
    }

    #[test]
    fn image_parts_become_markdown() {
        let m: Message = serde_json::from_value(serde_json::json!({"role":"user","content":[
            {"type":"text","text":"see "},{"type":"image_url","image_url":{"url":"u"}}]}))
        .unwrap();
        let t = ChatTemplate::new("{{ messages[0].content }}".into(), None, None).unwrap();
        assert_eq!(t.apply(vec![m], None).unwrap(), "see ![](u)");
    }
}
