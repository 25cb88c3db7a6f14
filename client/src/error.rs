//! The client's error type: TGI's `{"error","error_type"}` bodies and status codes mapped to
//! typed variants, plus transport and decode failures.

use serde::Deserialize;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Everything a call can fail with.
///
/// Server-side variants carry TGI's `error` text (e.g. `Input validation error: ...`, shown as
/// is) and its `error_type` string (`validation`, `overloaded`, `generation`, ...), so callers
/// can both show the message and branch on the kind.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 422: the request was rejected (validation, template, tool or batch-size errors).
    #[error("{message}")]
    Validation { message: String, error_type: String },
    /// 424: the model failed while generating.
    #[error("{message}")]
    Generation { message: String, error_type: String },
    /// 429: every concurrent-request slot is taken; retry later.
    #[error("{message}")]
    Overloaded { message: String, error_type: String },
    /// 500 with `incomplete_generation*`: the backend stream ended early.
    #[error("{message}")]
    Incomplete { message: String, error_type: String },
    /// 503: the server reports itself unhealthy (or is not ready yet).
    #[error("server unavailable: {message}")]
    Unavailable { message: String, error_type: String },
    /// 401: missing or wrong bearer token (TGI answers with an empty body).
    #[error("unauthorized: check the bearer token")]
    Unauthorized,
    /// 413: the body exceeds the server's `--payload-limit`.
    #[error("payload too large: {message}")]
    PayloadTooLarge { message: String },
    /// Any other non-success status (including 500s of other kinds, and axum's plain-text
    /// 400/415/422 for malformed bodies).
    #[error("HTTP {status}: {message}")]
    Http {
        status: u16,
        message: String,
        error_type: String,
    },
    /// Connecting, sending or reading failed (including timeouts).
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered something that is not the expected JSON.
    #[error("could not decode the server's answer: {message}: {body}")]
    Decode { message: String, body: String },
    /// The base URL or a header given to the builder is invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// TGI's error body.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    /// Display text of the error.
    pub error: String,
    /// Stable kind string (`validation`, `overloaded`, ...).
    #[serde(default)]
    pub error_type: String,
}

/// The OpenAI routes' in-stream error: `{"error":{"message","http_status_code"}}`.
#[derive(Debug, Clone, Deserialize)]
struct OpenAiErrorBody {
    error: OpenAiError,
}

#[derive(Debug, Clone, Deserialize)]
struct OpenAiError {
    message: String,
    #[serde(default)]
    http_status_code: Option<u16>,
}

impl ClientError {
    /// Maps a non-success answer (status and raw body) to a variant.
    pub fn from_response(status: u16, body: &str) -> ClientError {
        let (message, error_type) = match serde_json::from_str::<ErrorBody>(body) {
            Ok(b) => (b.error, b.error_type),
            Err(_) => (body.trim().to_string(), String::new()),
        };
        Self::from_parts(status, message, error_type)
    }

    /// Maps an SSE `data:` payload that is an error event to a variant; None if it is not one.
    /// Handles both TGI's `{"error","error_type"}` (on `/generate_stream`) and the OpenAI form
    /// `{"error":{"message","http_status_code"}}` (on the chat and completion routes).
    pub fn from_stream_event(data: &str) -> Option<ClientError> {
        if let Ok(b) = serde_json::from_str::<ErrorBody>(data) {
            let status = status_of_error_type(&b.error_type);
            return Some(Self::from_parts(status, b.error, b.error_type));
        }
        let b = serde_json::from_str::<OpenAiErrorBody>(data).ok()?;
        let status = b.error.http_status_code.unwrap_or(500);
        Some(Self::from_parts(status, b.error.message, String::new()))
    }

    fn from_parts(status: u16, message: String, error_type: String) -> ClientError {
        match status {
            401 => ClientError::Unauthorized,
            413 => ClientError::PayloadTooLarge { message },
            422 => ClientError::Validation {
                message,
                error_type,
            },
            424 => ClientError::Generation {
                message,
                error_type,
            },
            429 => ClientError::Overloaded {
                message,
                error_type,
            },
            500 if error_type.starts_with("incomplete_generation") => ClientError::Incomplete {
                message,
                error_type,
            },
            503 => ClientError::Unavailable {
                message,
                error_type,
            },
            _ => ClientError::Http {
                status,
                message,
                error_type,
            },
        }
    }

    /// TGI's `error_type` string, when the server sent one.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            ClientError::Validation { error_type, .. }
            | ClientError::Generation { error_type, .. }
            | ClientError::Overloaded { error_type, .. }
            | ClientError::Incomplete { error_type, .. }
            | ClientError::Unavailable { error_type, .. }
            | ClientError::Http { error_type, .. } => {
                (!error_type.is_empty()).then_some(error_type.as_str())
            }
            _ => None,
        }
    }

    /// The server's message text, when there is one.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Validation { message, .. }
            | ClientError::Generation { message, .. }
            | ClientError::Overloaded { message, .. }
            | ClientError::Incomplete { message, .. }
            | ClientError::Unavailable { message, .. }
            | ClientError::PayloadTooLarge { message }
            | ClientError::Http { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True for errors worth retrying later (overloaded, unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Overloaded { .. } | ClientError::Unavailable { .. }
        )
    }
}

/// The HTTP status TGI uses for an `error_type` (stream errors come with status 200, so the
/// kind decides the variant).
fn status_of_error_type(error_type: &str) -> u16 {
    match error_type {
        "validation"
        | "template_error"
        | "missing_template_variable"
        | "tool_error"
        | "batch size exceeded"
        | "suffix not supported" => 422,
        "generation" => 424,
        "overloaded" => 429,
        "healthcheck" => 503,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_variants() {
        let body = |msg: &str, ty: &str| format!(r#"{{"error":"{msg}","error_type":"{ty}"}}"#);
        let e = ClientError::from_response(
            422,
            &body(
                "Input validation error: `inputs` must not be empty",
                "validation",
            ),
        );
        assert!(
            matches!(&e, ClientError::Validation { message, error_type }
                if message == "Input validation error: `inputs` must not be empty" && error_type == "validation"),
            "{e:?}"
        );
        assert!(matches!(
            ClientError::from_response(
                424,
                &body("Request failed during generation: x", "generation")
            ),
            ClientError::Generation { .. }
        ));
        let e = ClientError::from_response(429, &body("Model is overloaded", "overloaded"));
        assert!(matches!(e, ClientError::Overloaded { .. }));
        assert!(e.is_retryable());
        assert!(matches!(
            ClientError::from_response(
                500,
                &body("Incomplete generation", "incomplete_generation")
            ),
            ClientError::Incomplete { .. }
        ));
        assert!(matches!(
            ClientError::from_response(500, &body("boom", "stream_serialization_error")),
            ClientError::Http { status: 500, .. }
        ));
        let e = ClientError::from_response(503, &body("unhealthy", "healthcheck"));
        assert!(matches!(e, ClientError::Unavailable { .. }));
        assert_eq!(e.error_type(), Some("healthcheck"));
        assert!(matches!(
            ClientError::from_response(401, ""),
            ClientError::Unauthorized
        ));
        assert!(matches!(
            ClientError::from_response(413, "length limit exceeded"),
            ClientError::PayloadTooLarge { message } if message == "length limit exceeded"
        ));
    }

    #[test]
    fn plain_text_bodies_keep_their_text() {
        let e = ClientError::from_response(
            415,
            "Expected request with `Content-Type: application/json`\n",
        );
        match e {
            ClientError::Http {
                status,
                message,
                error_type,
            } => {
                assert_eq!(status, 415);
                assert_eq!(
                    message,
                    "Expected request with `Content-Type: application/json`"
                );
                assert!(error_type.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_error_events() {
        let e = ClientError::from_stream_event(
            r#"{"error":"Input validation error: `best_of` != 1 is not supported when streaming tokens","error_type":"validation"}"#,
        );
        assert!(matches!(e, Some(ClientError::Validation { .. })), "{e:?}");
        let e = ClientError::from_stream_event(
            r#"{"error":"Incomplete generation stream","error_type":"incomplete_generation_stream"}"#,
        );
        assert!(matches!(e, Some(ClientError::Incomplete { .. })), "{e:?}");
        let e = ClientError::from_stream_event(
            r#"{"error":{"message":"Model is overloaded","http_status_code":422}}"#,
        );
        assert!(
            matches!(&e, Some(ClientError::Validation { message, .. }) if message == "Model is overloaded"),
            "{e:?}"
        );
        assert!(ClientError::from_stream_event(r#"{"index":1}"#).is_none());
        assert!(ClientError::from_stream_event("[DONE]").is_none());
    }
}
