//! Streaming tool calls: the model writes `{"function": {"_name": "f", ...args}}`; clients get
//! OpenAI deltas: first the name (arguments `"{"`), then argument fragments, with the
//! wrapper's closing brace trimmed. `no_tool` answers become plain content.

use crate::api::{DeltaFunction, Message};

/// What the parser wants sent.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolEvent {
    /// Arguments (and, on the first event, the function name).
    Call(DeltaFunction),
    /// Text of a `no_tool` answer.
    Content(String),
}

/// Incremental parser of the generated tool JSON.
#[derive(Debug, Default)]
pub struct ToolStream {
    buffer: String,
    name: Option<String>,
    held: String,
    /// Set until the first argument character: drops the `,` after the name.
    at_separator: bool,
}

fn parse_name(buffer: &str) -> Option<(String, usize)> {
    let key = buffer.find("\"_name\"")?;
    let rest = &buffer[key + 7..];
    let colon = rest.find(':')?;
    let after = &rest[colon + 1..];
    let open = after.find('"')?;
    let value = &after[open + 1..];
    let close = value.find('"')?;
    let name = value[..close].to_string();
    let mut end = key + 7 + colon + 1 + open + 1 + close + 1;
    // Skip the separator after the name so the arguments start cleanly.
    let tail = &buffer[end..];
    let trimmed = tail.trim_start();
    end += tail.len() - trimmed.len();
    if trimmed.starts_with(',') {
        end += 1;
    }
    Some((name, end))
}

impl ToolStream {
    /// Feeds generated text; returns the events ready to send.
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.buffer.push_str(text);
        match &self.name {
            None => {
                let Some((name, end)) = parse_name(&self.buffer) else {
                    return vec![];
                };
                self.name = Some(name.clone());
                if name == "no_tool" {
                    return vec![];
                }
                let rest = self.buffer[end..].to_string();
                self.at_separator = true;
                let mut events = vec![ToolEvent::Call(DeltaFunction {
                    name: Some(name),
                    arguments: "{".to_string(),
                })];
                events.extend(self.release(&rest));
                events
            }
            Some(name) if name == "no_tool" => vec![],
            Some(_) => self.release(text),
        }
    }

    /// Sends text except a trailing run of `}`/whitespace, which may be the wrapper's end.
    fn release(&mut self, text: &str) -> Vec<ToolEvent> {
        let text = if self.at_separator {
            let trimmed = text.trim_start();
            let trimmed = trimmed.strip_prefix(',').unwrap_or(trimmed);
            if !trimmed.trim().is_empty() {
                self.at_separator = false;
            }
            trimmed
        } else {
            text
        };
        self.held.push_str(text);
        let keep_from = self
            .held
            .rfind(|c: char| c != '}' && !c.is_whitespace())
            .map(|i| {
                i + self.held[i..]
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .unwrap_or(1)
            })
            .unwrap_or(0);
        let out: String = self.held.drain(..keep_from).collect();
        if out.is_empty() {
            vec![]
        } else {
            vec![ToolEvent::Call(DeltaFunction {
                name: None,
                arguments: out,
            })]
        }
    }

    /// Flushes at the end of generation: drops the wrapper's closing brace.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        match self.name.as_deref() {
            Some("no_tool") => {
                let content = serde_json::from_str::<serde_json::Value>(&self.buffer)
                    .ok()
                    .and_then(|v| v["function"]["content"].as_str().map(str::to_string))
                    .unwrap_or_default();
                vec![ToolEvent::Content(content)]
            }
            Some(_) => {
                let mut rest = std::mem::take(&mut self.held);
                if let Some(i) = rest.rfind('}') {
                    rest.remove(i);
                }
                let rest = rest.trim_end().to_string();
                if rest.is_empty() {
                    vec![]
                } else {
                    vec![ToolEvent::Call(DeltaFunction {
                        name: None,
                        arguments: rest,
                    })]
                }
            }
            // The name never appeared: hand back what was generated as content.
            None => vec![ToolEvent::Content(std::mem::take(&mut self.buffer))],
        }
    }
}

/// Streaming tool-call id: one more than the largest numeric id in the history, `"0"` when
/// there is none, a random UUIDv4 when the history uses non-numeric ids.
pub fn next_tool_call_id(messages: &[Message]) -> String {
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.tool_calls.as_ref())
        .flatten()
        .map(|c| c.id.as_str())
        .collect();
    if ids.is_empty() {
        return "0".to_string();
    }
    let numeric: Option<Vec<u64>> = ids.iter().map(|id| id.parse::<u64>().ok()).collect();
    match numeric.and_then(|n| n.into_iter().max()) {
        Some(max) => (max + 1).to_string(),
        None => {
            let b: [u8; 16] = rand::random();
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
                (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
                u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (Option<String>, String, Vec<ToolEvent>) {
        let mut s = ToolStream::default();
        let mut events = vec![];
        for p in pieces {
            events.extend(s.push(p));
        }
        events.extend(s.finish());
        let mut name = None;
        let mut args = String::new();
        for e in &events {
            if let ToolEvent::Call(f) = e {
                if f.name.is_some() {
                    name = f.name.clone();
                }
                args.push_str(&f.arguments);
            }
        }
        (name, args, events)
    }

    #[test]
    fn streams_name_then_arguments() {
        let text = r#"{"function": {"_name": "get_weather", "location": "Paris", "unit": "c"}}"#;
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (name, args, events) = run(&refs);
        assert_eq!(name.as_deref(), Some("get_weather"));
        let parsed: serde_json::Value = serde_json::from_str(&args).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"location": "Paris", "unit": "c"})
        );
        assert!(matches!(&events[0], ToolEvent::Call(f) if f.arguments == "{"));
    }

    #[test]
    fn nested_objects_survive_trimming() {
        let (_, args, _) = run(&[r#"{"function": {"_name": "f", "#, r#""a": {"b": 1}"#, "}}"]);
        let parsed: serde_json::Value = serde_json::from_str(&args).unwrap();
        assert_eq!(parsed, serde_json::json!({"a": {"b": 1}}));
    }

    #[test]
    fn no_tool_becomes_content() {
        let (_, _, events) = run(&[
            r#"{"function": {"_name": "no_tool", "content": "#,
            r#""hello"}}"#,
        ]);
        assert_eq!(events, vec![ToolEvent::Content("hello".into())]);
    }

    #[test]
    fn ids_follow_history() {
        let none: Vec<Message> = vec![];
        assert_eq!(next_tool_call_id(&none), "0");
        let history: Vec<Message> = serde_json::from_value(serde_json::json!([
            {"role": "assistant", "tool_calls": [{"id": "3", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        ])).unwrap();
        assert_eq!(next_tool_call_id(&history), "4");
        let history: Vec<Message> = serde_json::from_value(serde_json::json!([
            {"role": "assistant", "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        ])).unwrap();
        let id = next_tool_call_id(&history);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
