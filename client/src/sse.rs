//! Server-sent events: an incremental parser for `data:` payloads and the adapter that turns a
//! streaming HTTP answer into a `Stream` of typed items.
//!
//! TGI writes `data:<json>\n\n` (no space after the colon), keep-alive comments (`:`) while
//! idle, and on the OpenAI routes a final `data: [DONE]`. Errors arrive as a last `data:`
//! event with status 200, so they are recognised by shape and become an `Err` item.

use crate::error::{ClientError, Result};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::pin::Pin;

/// The OpenAI routes' end-of-stream marker.
pub const DONE: &str = "[DONE]";

/// Incremental SSE parser: feed it bytes as they come, take complete events' data out.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line (may end mid UTF-8 sequence).
    line: Vec<u8>,
    /// `data:` lines of the current event.
    data: Vec<String>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Consumes `chunk`; returns the data of every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.end_line(&line) {
                    events.push(event);
                }
            } else {
                self.line.push(b);
            }
        }
        events
    }

    /// At end of input: the data of an event cut before its blank line, if any (a payload
    /// truncated by the server then surfaces as a decode error rather than vanishing).
    pub fn finish(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(event) = self.end_line(&line) {
                return Some(event);
            }
        }
        self.flush()
    }

    fn end_line(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            return self.flush();
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            self.data.push(value.to_string());
        }
        None
    }

    fn flush(&mut self) -> Option<String> {
        if self.data.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.data).join("\n"))
    }
}

/// What one event's data means for a stream of `T`.
#[derive(Debug)]
pub enum SseItem<T> {
    /// A regular item.
    Item(T),
    /// `[DONE]`: the stream is over.
    Done,
    /// An error event or an undecodable payload: yielded, then the stream ends.
    Error(ClientError),
}

/// Interprets one event's data.
pub fn decode_event<T: DeserializeOwned>(data: &str) -> SseItem<T> {
    if data.trim() == DONE {
        return SseItem::Done;
    }
    if let Some(err) = ClientError::from_stream_event(data) {
        return SseItem::Error(err);
    }
    match serde_json::from_str::<T>(data) {
        Ok(item) => SseItem::Item(item),
        Err(e) => SseItem::Error(ClientError::Decode {
            message: e.to_string(),
            body: data.to_string(),
        }),
    }
}

struct State<S> {
    bytes: S,
    parser: SseParser,
    pending: VecDeque<String>,
    finished: bool,
}

/// A boxed stream of decoded events; `Unpin`, so `.next().await` works on it directly.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

/// Turns a byte stream of SSE into a stream of decoded `T`s. Ends at `[DONE]`, at the end of
/// the body, or after yielding the first error.
pub fn decode_stream<T, S>(bytes: S) -> EventStream<T>
where
    T: DeserializeOwned + Send + 'static,
    S: Stream<Item = std::result::Result<Bytes, reqwest::Error>> + Unpin + Send + 'static,
{
    let state = State {
        bytes,
        parser: SseParser::new(),
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.finished {
                return None;
            }
            if let Some(data) = st.pending.pop_front() {
                match decode_event::<T>(&data) {
                    SseItem::Item(item) => return Some((Ok(item), st)),
                    SseItem::Done => return None,
                    SseItem::Error(e) => {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                }
            }
            match st.bytes.next().await {
                Some(Ok(chunk)) => st.pending.extend(st.parser.push(&chunk)),
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(ClientError::Transport(e)), st));
                }
                None => match st.parser.finish() {
                    Some(data) => st.pending.push_back(data),
                    None => return None,
                },
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatCompletionChunk, StreamResponse};

    const TOKEN: &str = r#"data:{"index":1,"token":{"id":5,"text":"Hi","logprob":-0.5,"special":false},"generated_text":null,"details":null}"#;

    #[test]
    fn events_split_across_chunks_and_utf8() {
        let mut p = SseParser::new();
        let text = "data:{\"a\":\"é\"}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        let bytes = text.as_bytes();
        // Cut inside the two-byte 'é'.
        let cut = text.find('é').map(|i| i + 1).unwrap_or(0);
        let mut out = p.push(&bytes[..cut]);
        assert!(out.is_empty());
        out.extend(p.push(&bytes[cut..]));
        assert_eq!(out, vec!["{\"a\":\"é\"}".to_string(), DONE.to_string()]);
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn crlf_multiline_and_other_fields() {
        let mut p = SseParser::new();
        let out = p.push(b"event: x\r\nid: 3\r\ndata: a\r\ndata:b\r\n\r\nretry: 10\n\n");
        assert_eq!(out, vec!["a\nb".to_string()]);
    }

    #[test]
    fn truncated_event_surfaces_at_end() {
        let mut p = SseParser::new();
        assert!(p.push(b"data:{\"index\":1,").is_empty());
        assert_eq!(p.finish().as_deref(), Some("{\"index\":1,"));
    }

    #[test]
    fn decodes_tokens_done_and_errors() {
        let data = TOKEN.strip_prefix("data:").unwrap_or_default();
        match decode_event::<StreamResponse>(data) {
            SseItem::Item(r) => {
                assert_eq!(r.index, 1);
                assert_eq!(r.token.text, "Hi");
                assert!(r.generated_text.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_event::<ChatCompletionChunk>("[DONE]"),
            SseItem::Done
        ));
        assert!(matches!(
            decode_event::<StreamResponse>(
                r#"{"error":"Model is overloaded","error_type":"overloaded"}"#
            ),
            SseItem::Error(ClientError::Overloaded { .. })
        ));
        assert!(matches!(
            decode_event::<StreamResponse>("{not json"),
            SseItem::Error(ClientError::Decode { .. })
        ));
    }

    fn body(
        parts: &[&'static str],
    ) -> impl Stream<Item = std::result::Result<Bytes, reqwest::Error>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn stream_yields_items_then_error_and_stops() {
        let s = decode_stream::<StreamResponse, _>(body(&[
            "data:{\"index\":1,\"token\":{\"id\":5,\"text\":\"Hi\",\"logprob\":-0.5,\"special\":false},",
            "\"generated_text\":null,\"details\":null}\n\n",
            "data:{\"error\":\"Incomplete generation stream\",\"error_type\":\"incomplete_generation_stream\"}\n\n",
            "data:{\"index\":2}\n\n",
        ]));
        let items: Vec<_> = s.collect().await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(ClientError::Incomplete { .. })));
    }

    #[tokio::test]
    async fn chat_stream_ends_at_done() {
        let chunk = r#"data:{"object":"chat.completion.chunk","id":"","created":1,"model":"m","system_fingerprint":"f","choices":[{"index":0,"delta":{"role":"assistant","content":"OK"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
        let s = decode_stream::<ChatCompletionChunk, _>(body(&[
            Box::leak(format!("{chunk}\n\n").into_boxed_str()),
            "data: [DONE]\n\n",
            "data:{\"never\":1}\n\n",
        ]));
        let items: Vec<_> = s.collect().await;
        assert_eq!(items.len(), 1, "{items:?}");
        let c = items.into_iter().next().and_then(|r| r.ok());
        assert_eq!(
            c.and_then(|c| c.choices.first().and_then(|ch| ch.delta.content.clone())),
            Some("OK".to_string())
        );
    }
}
