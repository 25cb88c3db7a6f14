//! HTTP helpers: a blocking status probe for readiness polling, and async JSON/SSE calls with
//! timeouts on every request.

use futures::StreamExt;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Status code of `GET path` on loopback `port`; None if nothing answers.
pub fn get_status_blocking(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `POST path` with a JSON body on loopback `port` (HTTP/1.0, blocking); status and parsed body.
pub fn post_json_blocking(port: u16, path: &str, body: &Value) -> Option<(u16, Value)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let (_, payload) = response.split_once("\r\n\r\n")?;
    Some((
        status,
        serde_json::from_str(payload).unwrap_or(Value::String(payload.into())),
    ))
}

/// A client with a per-request timeout and no idle pool.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// GETs `url` and returns status and parsed JSON body.
pub async fn get_json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POSTs JSON and returns status and parsed JSON body.
pub async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).json(body).send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// How an SSE stream ended.
#[derive(Debug)]
pub struct SseOutcome {
    pub status: u16,
    /// `data:` payloads in order.
    pub events: Vec<String>,
    /// Transport error that cut the stream, if any.
    pub transport_error: Option<String>,
    /// Bytes after the last complete event (a cut mid-event).
    pub trailing: String,
}

/// POSTs and collects every SSE `data:` payload until the stream ends; `on_event` sees each
/// payload as it arrives.
pub async fn post_sse_with(
    c: &reqwest::Client,
    url: &str,
    body: &Value,
    mut on_event: impl FnMut(&str),
) -> SseOutcome {
    let r = match c.post(url).json(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return SseOutcome {
                status: 0,
                events: vec![],
                transport_error: Some(e.to_string()),
                trailing: String::new(),
            }
        }
    };
    let status = r.status().as_u16();
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut stream = r.bytes_stream();
    let mut transport_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) => {
                transport_error = Some(e.to_string());
                break;
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let event = buffer[..end].to_string();
            buffer.drain(..end + 2);
            if let Some(data) = event.strip_prefix("data:") {
                // SSE: one space after the colon is optional.
                let data = data.strip_prefix(' ').unwrap_or(data);
                on_event(data);
                events.push(data.to_string());
            }
        }
    }
    SseOutcome {
        status,
        events,
        transport_error,
        trailing: buffer,
    }
}

/// POSTs and collects every SSE `data:` payload; panics on a transport error.
pub async fn post_sse(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Vec<Value>) {
    let out = post_sse_with(c, url, body, |_| {}).await;
    assert!(out.transport_error.is_none(), "{out:?}");
    assert!(
        out.trailing.is_empty(),
        "trailing bytes: {:?}",
        out.trailing
    );
    let events = out
        .events
        .iter()
        .map(|e| {
            // OpenAI streams end with `data: [DONE]` (with a space, as TGI's axum writes it).
            if e.trim_start() == "[DONE]" {
                Value::String(e.trim_start().to_string())
            } else {
                serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}"))
            }
        })
        .collect();
    (out.status, events)
}
