//! Server-sent events framing as TGI writes it: `data:<json>\n\n` (no space), keep-alive
//! comments while idle, `data: [DONE]` only where the OpenAI routes add it.

use crate::api::ErrorResponse;
use crate::error::RouterError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;

/// Idle time after which a keep-alive comment is sent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One `data:` event.
pub fn data_event(payload: &str) -> String {
    format!("data:{payload}\n\n")
}

/// One event carrying a serializable value; serialization failure becomes TGI's error event.
pub fn json_event<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_string(value) {
        Ok(json) => data_event(&json),
        Err(_) => error_event(&RouterError::StreamSerialization),
    }
}

/// The `/generate_stream` error event: `{"error","error_type"}`.
pub fn error_event(err: &RouterError) -> String {
    json_event(&ErrorResponse {
        error: err.to_string(),
        error_type: err.error_type().to_string(),
    })
}

/// The OpenAI routes' error event: `{"error":{"message","http_status_code":422}}`.
pub fn openai_error_event(err: &RouterError) -> String {
    #[derive(serde::Serialize)]
    struct Inner {
        message: String,
        http_status_code: u16,
    }
    #[derive(serde::Serialize)]
    struct Outer {
        error: Inner,
    }
    json_event(&Outer {
        error: Inner {
            message: err.to_string(),
            http_status_code: 422,
        },
    })
}

/// The terminator of OpenAI streams. TGI writes it with axum's `Event::data`, which puts a
/// space after the colon (JSON events use `json_data`, which does not); clients such as
/// `huggingface_hub` match `data: [DONE]` byte for byte.
pub fn done_event() -> String {
    "data: [DONE]\n\n".to_string()
}

/// Wraps framed events into a body, inserting `:\n\n` comments when idle for [`KEEP_ALIVE`].
pub fn body<S>(events: S, keep_alive: Duration) -> Body
where
    S: Stream<Item = String> + Send + 'static,
{
    let stream = async_stream::stream! {
        let mut events = std::pin::pin!(events);
        loop {
            match tokio::time::timeout(keep_alive, events.next()).await {
                Ok(Some(event)) => yield Ok::<_, Infallible>(Bytes::from(event)),
                Ok(None) => break,
                Err(_) => yield Ok(Bytes::from_static(b":\n\n")),
            }
        }
    };
    Body::from_stream(stream)
}

/// A 200 `text/event-stream` response with the given extra headers.
pub fn response<S>(mut headers: HeaderMap, events: S) -> Response
where
    S: Stream<Item = String> + Send + 'static,
{
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    (headers, body(events, KEEP_ALIVE)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ValidationError;
    use http_body_util::BodyExt;

    #[test]
    fn framing_has_no_space_and_blank_line() {
        assert_eq!(data_event("{\"a\":1}"), "data:{\"a\":1}\n\n");
        assert_eq!(done_event(), "data: [DONE]\n\n");
    }

    #[test]
    fn error_events() {
        let err = RouterError::Validation(ValidationError::BestOfStream);
        assert_eq!(
            error_event(&err),
            "data:{\"error\":\"Input validation error: `best_of` != 1 is not supported when streaming tokens\",\"error_type\":\"validation\"}\n\n"
        );
        assert_eq!(
            openai_error_event(&RouterError::Overloaded),
            "data:{\"error\":{\"message\":\"Model is overloaded\",\"http_status_code\":422}}\n\n"
        );
    }

    #[tokio::test]
    async fn body_concatenates_events_and_ends() {
        let events = futures::stream::iter(vec![data_event("1"), data_event("2")]);
        let bytes = body(events, KEEP_ALIVE).collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"data:1\n\ndata:2\n\n");
    }

    #[tokio::test]
    async fn keep_alive_comment_when_idle() {
        let events = async_stream::stream! {
            tokio::time::sleep(Duration::from_millis(120)).await;
            yield data_event("x");
        };
        let bytes = body(events, Duration::from_millis(50))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with(":\n\n"), "{text:?}");
        assert!(text.ends_with("data:x\n\n"));
    }
}
