//! Route tests: the real axum router over an in-process fake `Backend`.

use super::*;
use crate::api::Info;
use crate::chat_template::ChatTemplate;
use crate::error::RouterError;
use crate::infer::types::{
    FinishReason, GeneratedText, InferStreamResponse, Token, ValidGenerateRequest,
};
use crate::infer::{Backend, Infer, ResponseStream};
use crate::test_util::word_tokenizer;
use crate::validation::{TokenizerPool, Validation, ValidationConfig};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::ServiceExt;

/// Emits `max_new_tokens` tokens `" t{i}"`; prompts containing `eos`, `fail` or `hang` end
/// early with EOS, fail with a shard error, or close without an end message.
#[derive(Default)]
struct FakeBackend {
    scheduled: Mutex<Vec<ValidGenerateRequest>>,
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    fn schedule(&self, request: ValidGenerateRequest) -> Result<ResponseStream, RouterError> {
        if let Ok(mut s) = self.scheduled.lock() {
            s.push(request.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let queued = Instant::now();
            let start = Instant::now();
            if request.inputs.contains("fail") {
                let _ = tx.send(Err(RouterError::Generation("Server error: boom".into())));
                return;
            }
            let tools = request.parameters.grammar.is_some();
            let eos = request.inputs.contains("eos") || tools;
            // With a grammar (tools), the "model" calls get_weather, 5 characters a token.
            let tool_json = r#"{"function": {"_name": "get_weather", "location": "Paris"}}"#;
            let pieces: Vec<String> = tool_json
                .as_bytes()
                .chunks(5)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let n = if tools {
                pieces.len() as u32 + 1
            } else if eos {
                2
            } else {
                request.stopping_parameters.max_new_tokens
            };
            let mut text = String::new();
            for i in 0..n {
                let special = eos && i + 1 == n;
                let plain = match pieces.get(i as usize) {
                    Some(piece) if tools => piece.clone(),
                    _ => format!(" t{i}"),
                };
                let token = Token {
                    id: 100 + i,
                    text: if special { "</s>".into() } else { plain },
                    logprob: -0.5 - (request.parameters.seed % 7) as f32 * 0.01,
                    special,
                };
                if !special {
                    text.push_str(&token.text);
                }
                let top_tokens = (0..request.top_n_tokens)
                    .map(|k| Token {
                        id: k,
                        text: "x".into(),
                        logprob: -1.0,
                        special: false,
                    })
                    .collect();
                let message = if i + 1 == n && !request.inputs.contains("hang") {
                    InferStreamResponse::End {
                        token,
                        top_tokens,
                        generated_text: GeneratedText {
                            text: text.clone(),
                            generated_tokens: n,
                            finish_reason: if eos {
                                FinishReason::EosToken
                            } else {
                                FinishReason::Length
                            },
                            seed: request
                                .parameters
                                .do_sample
                                .then_some(request.parameters.seed),
                        },
                        start,
                        queued,
                    }
                } else {
                    InferStreamResponse::Intermediate { token, top_tokens }
                };
                if tx.send(Ok(message)).is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        Ok(UnboundedReceiverStream::new(rx))
    }

    async fn health(&self, _current_health: bool) -> bool {
        true
    }
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

struct Harness {
    app: axum::Router,
    backend: Arc<FakeBackend>,
}

fn harness_with(max_concurrent: usize, api_key: Option<&str>, payload_limit: usize) -> Harness {
    let backend = Arc::new(FakeBackend::default());
    let validation = Validation::new(
        ValidationConfig {
            max_best_of: 2,
            max_stop_sequences: 4,
            max_top_n_tokens: 5,
            max_input_length: 2000,
            max_total_tokens: 4000,
            disable_grammar_support: false,
        },
        Some(TokenizerPool::new(word_tokenizer(), 2)),
    );
    let template = ChatTemplate::new(CHATML.into(), None, Some("<|im_end|>".into())).unwrap();
    let infer = Infer::new(backend.clone(), validation, max_concurrent, Some(template));
    let info = Info {
        model_id: "tiny".into(),
        model_sha: None,
        model_pipeline_tag: None,
        max_concurrent_requests: max_concurrent,
        max_best_of: 2,
        max_stop_sequences: 4,
        max_input_tokens: 1000,
        max_total_tokens: 4000,
        validation_workers: 2,
        max_client_batch_size: 2,
        router: "text-generation-router",
        version: crate::VERSION,
        sha: None,
        docker_label: None,
    };
    let state = AppState {
        infer,
        info: Arc::new(info),
        compute_type: "gpu+optimized".into(),
        default_return_full_text: true,
        system_fingerprint: "0.1.0-native".into(),
        metrics: None,
    };
    let app = router(
        state,
        &ServerConfig {
            api_key: api_key.map(str::to_string),
            cors_allow_origin: None,
            payload_limit,
        },
    );
    Harness { app, backend }
}

fn harness() -> Harness {
    harness_with(128, None, 2_000_000)
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut builder = Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let response = app
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, HeaderMap, Bytes) {
    send(app, "POST", uri, Some(body), &[]).await
}

fn json_of(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Splits an SSE body into its `data:` payloads, checking the framing.
fn events(bytes: &Bytes) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|e| {
            e.strip_prefix("data:")
                .unwrap_or_else(|| panic!("bad event {e:?}"))
                .to_string()
        })
        .collect()
}

mod generate;
mod misc;
mod openai;
