//! Incremental parsing of TGI's `/generate_stream` server-sent events: `data:<json>\n\n`
//! blocks (the space after the colon is optional in SSE), `:` keep-alive comments, and the
//! JSON payloads the benchmark needs (token, final details, error).

use serde::Deserialize;

/// Splits a byte stream into SSE `data` payloads. Bytes are buffered until an event's blank
/// line arrives, so events and UTF-8 characters cut across network chunks come out whole.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Appends `chunk` and returns the payloads of every event it completed, in order.
    /// Events without a `data` field (keep-alive comments) yield nothing.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = event_end(&self.buffer) {
            let block: Vec<u8> = self.buffer.drain(..end + sep).take(end).collect();
            if let Some(data) = data_of(&String::from_utf8_lossy(&block)) {
                out.push(data);
            }
        }
        out
    }

    /// Bytes received after the last complete event (non-empty when a stream was cut).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// Position and length of the first blank-line separator (`\n\n` or `\r\n\r\n`).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `data` of one event block: its `data:` lines joined by `\n`; None without any.
fn data_of(block: &str) -> Option<String> {
    let mut data: Option<String> = None;
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    data
}

/// The parts of one `/generate_stream` event the benchmark reads.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    /// The generated token (absent in error events); only its presence matters here.
    pub token: Option<serde::de::IgnoredAny>,
    /// Present on the last event when the request asked for `details`.
    pub details: Option<StreamDetails>,
    /// An error event's message.
    pub error: Option<String>,
}

/// The final event's details.
#[derive(Debug, Deserialize)]
pub struct StreamDetails {
    /// `length`, `eos_token` or `stop_sequence`.
    pub finish_reason: String,
    /// Tokens generated for the request.
    pub generated_tokens: u32,
    /// Prompt tokens after truncation.
    pub input_length: u32,
}

impl StreamEvent {
    /// Parses one payload.
    pub fn parse(payload: &str) -> Result<StreamEvent, serde_json::Error> {
        serde_json::from_str(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data:{\"a\":").is_empty());
        assert_eq!(p.pending(), 10);
        assert_eq!(p.feed(b"1}\n"), Vec::<String>::new());
        assert_eq!(
            p.feed(b"\ndata: {\"b\":2}\n\ndata:x"),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(p.pending(), 6);
    }

    #[test]
    fn comments_crlf_multiline_and_split_utf8() {
        let mut p = SseParser::default();
        assert!(p.feed(b":\n\n").is_empty(), "keep-alive comment");
        assert_eq!(p.feed(b"data: a\r\ndata:b\r\n\r\n"), vec!["a\nb"]);
        let text = "data:é\n\n".as_bytes();
        assert!(
            p.feed(&text[..6]).is_empty(),
            "cut inside the two-byte character"
        );
        assert_eq!(p.feed(&text[6..]), vec!["é"]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn tgi_token_final_and_error_events() {
        let token = r#"{"index":3,"token":{"id":42,"text":"x","logprob":-0.1,"special":false},"generated_text":null,"details":null}"#;
        let e = StreamEvent::parse(token).unwrap();
        assert!(e.token.is_some());
        assert!(e.details.is_none() && e.error.is_none());

        let last = r#"{"index":4,"token":{"id":7,"text":"y","logprob":-0.2,"special":false},"generated_text":"xy","details":{"finish_reason":"length","generated_tokens":4,"seed":null,"input_length":32}}"#;
        let d = StreamEvent::parse(last).unwrap().details.unwrap();
        assert_eq!(
            (d.finish_reason.as_str(), d.generated_tokens, d.input_length),
            ("length", 4, 32)
        );

        let err = r#"{"error":"Request failed during generation","error_type":"generation"}"#;
        let e = StreamEvent::parse(err).unwrap();
        assert!(e.token.is_none());
        assert_eq!(e.error.as_deref(), Some("Request failed during generation"));
    }
}
