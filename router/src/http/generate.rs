//! `POST /generate`, `/generate_stream` and the compat `POST /`.

use super::server::AppState;
use super::sse;
use crate::api::{
    BestOfSequence, CompatGenerateRequest, Details, GenerateRequest, GenerateResponse,
    StreamDetails, StreamResponse,
};
use crate::error::{RouterError, ValidationError};
use crate::infer::types::InferStreamResponse;
use crate::infer::{GenerateStream, InferResponse};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::time::{Duration, Instant};

fn header(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, v);
    }
}

/// Timings of one request, for headers and histograms.
pub(crate) struct Timings {
    pub total: Duration,
    pub validation: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub per_token: Duration,
}

impl Timings {
    pub(crate) fn new(start: Instant, queued: Instant, batch_start: Instant, tokens: u32) -> Self {
        let inference = batch_start.elapsed();
        Timings {
            total: start.elapsed(),
            validation: queued.saturating_duration_since(start),
            queue: batch_start.saturating_duration_since(queued),
            inference,
            per_token: inference / tokens.max(1),
        }
    }

    /// Records TGI's success metrics.
    pub(crate) fn record(&self, generated_tokens: u32) {
        metrics::counter!("tgi_request_success").increment(1);
        metrics::histogram!("tgi_request_duration").record(self.total.as_secs_f64());
        metrics::histogram!("tgi_request_validation_duration")
            .record(self.validation.as_secs_f64());
        metrics::histogram!("tgi_request_queue_duration").record(self.queue.as_secs_f64());
        metrics::histogram!("tgi_request_inference_duration").record(self.inference.as_secs_f64());
        metrics::histogram!("tgi_request_mean_time_per_token_duration")
            .record(self.per_token.as_secs_f64());
        metrics::histogram!("tgi_request_generated_tokens").record(generated_tokens as f64);
    }

    /// Writes the `x-*` timing headers.
    pub(crate) fn headers(&self, headers: &mut HeaderMap, prompt: u32, generated: u32) {
        header(headers, "x-compute-time", self.total.as_secs_f64());
        header(headers, "x-total-time", self.total.as_millis());
        header(headers, "x-validation-time", self.validation.as_millis());
        header(headers, "x-queue-time", self.queue.as_millis());
        header(headers, "x-inference-time", self.inference.as_millis());
        header(headers, "x-time-per-token", self.per_token.as_millis());
        header(headers, "x-prompt-tokens", prompt);
        header(headers, "x-generated-tokens", generated);
    }
}

/// A non-streamed generation with its headers and prompt length.
pub(crate) async fn generate_internal(
    state: &AppState,
    mut req: GenerateRequest,
    add_special_tokens: bool,
) -> Result<(HeaderMap, u32, GenerateResponse), RouterError> {
    let start = Instant::now();
    metrics::counter!("tgi_request_count").increment(1);
    let compute_characters = req.inputs.chars().count();
    let add_prompt = req
        .parameters
        .return_full_text
        .unwrap_or(false)
        .then(|| req.inputs.clone());
    let details = req.parameters.details || req.parameters.decoder_input_details;
    let decoder_input_details = req.parameters.decoder_input_details;
    req.parameters.return_full_text = None;

    let (response, others) = match req.parameters.best_of {
        Some(best_of) if best_of > 1 => {
            let (best, others) = state.infer.generate_best_of(req, best_of).await?;
            (best, Some(others))
        }
        _ => (state.infer.generate(req, add_special_tokens).await?, None),
    };
    let with_prompt = |text: &str| match &add_prompt {
        Some(prompt) => format!("{prompt}{text}"),
        None => text.to_string(),
    };
    let prefill_of = |r: &InferResponse| {
        if decoder_input_details {
            r.prefill.clone()
        } else {
            Vec::new()
        }
    };
    let details = details.then(|| Details {
        finish_reason: response.generated_text.finish_reason,
        generated_tokens: response.generated_text.generated_tokens,
        seed: response.generated_text.seed,
        prefill: prefill_of(&response),
        tokens: response.tokens.clone(),
        top_tokens: response.top_tokens.clone(),
        best_of_sequences: others.map(|others| {
            others
                .iter()
                .map(|r| BestOfSequence {
                    generated_text: with_prompt(&r.generated_text.text),
                    finish_reason: r.generated_text.finish_reason,
                    generated_tokens: r.generated_text.generated_tokens,
                    seed: r.generated_text.seed,
                    prefill: prefill_of(r),
                    tokens: r.tokens.clone(),
                    top_tokens: r.top_tokens.clone(),
                })
                .collect()
        }),
    });
    let generated = response.generated_text.generated_tokens;
    let timings = Timings::new(start, response.queued, response.start, generated);
    timings.record(generated);
    let mut headers = HeaderMap::new();
    header(&mut headers, "x-compute-type", &state.compute_type);
    header(&mut headers, "x-compute-characters", compute_characters);
    timings.headers(&mut headers, response.input_length, generated);
    tracing::info!(
        generated_tokens = generated,
        "Success: {:?}",
        response.generated_text.finish_reason
    );
    Ok((
        headers,
        response.input_length,
        GenerateResponse {
            generated_text: with_prompt(&response.generated_text.text),
            details,
        },
    ))
}

/// Headers sent with every stream (before inference starts).
pub(crate) fn stream_headers(state: &AppState, inputs: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    header(&mut headers, "x-compute-type", &state.compute_type);
    header(&mut headers, "x-compute-characters", inputs.chars().count());
    headers
}

/// The `/generate_stream` event sequence as values: tokens, then the final one; an error ends it.
pub(crate) fn stream_responses(
    state: AppState,
    mut req: GenerateRequest,
    add_special_tokens: bool,
) -> BoxStream<'static, Result<StreamResponse, RouterError>> {
    let stream = async_stream::stream! {
        let start = Instant::now();
        metrics::counter!("tgi_request_count").increment(1);
        let details = req.parameters.details;
        let add_prompt = req.parameters.return_full_text.unwrap_or(false).then(|| req.inputs.clone());
        req.parameters.return_full_text = None;
        if req.parameters.best_of.unwrap_or(1) != 1 {
            metrics::counter!("tgi_request_failure", "err" => "validation").increment(1);
            yield Err(ValidationError::BestOfStream.into());
            return;
        }
        if req.parameters.decoder_input_details {
            metrics::counter!("tgi_request_failure", "err" => "validation").increment(1);
            yield Err(ValidationError::PrefillDetailsStream.into());
            return;
        }
        let GenerateStream { input_length, mut stream } =
            match state.infer.generate_stream(req, add_special_tokens).await {
                Ok(s) => s,
                Err(err) => { yield Err(err); return; }
            };
        let mut index = 0u32;
        while let Some(message) = stream.next().await {
            match message {
                Ok(InferStreamResponse::Prefill(_)) => {}
                Ok(InferStreamResponse::Intermediate { token, top_tokens }) => {
                    index += 1;
                    yield Ok(StreamResponse { index, token, top_tokens, generated_text: None, details: None });
                }
                Ok(InferStreamResponse::End { token, top_tokens, generated_text, start: batch_start, queued }) => {
                    index += 1;
                    let timings = Timings::new(start, queued, batch_start, generated_text.generated_tokens);
                    timings.record(generated_text.generated_tokens);
                    tracing::info!(generated_tokens = generated_text.generated_tokens, "Success: {:?}", generated_text.finish_reason);
                    let text = match &add_prompt {
                        Some(prompt) => format!("{prompt}{}", generated_text.text),
                        None => generated_text.text,
                    };
                    yield Ok(StreamResponse {
                        index,
                        token,
                        top_tokens,
                        generated_text: Some(text),
                        details: details.then_some(StreamDetails {
                            finish_reason: generated_text.finish_reason,
                            generated_tokens: generated_text.generated_tokens,
                            seed: generated_text.seed,
                            input_length,
                        }),
                    });
                    return;
                }
                Err(err) => {
                    metrics::counter!("tgi_request_failure", "err" => err.failure_label()).increment(1);
                    tracing::error!("{err}");
                    yield Err(err);
                    return;
                }
            }
        }
        metrics::counter!("tgi_request_failure", "err" => "incomplete").increment(1);
        tracing::error!("{}", RouterError::IncompleteGenerationStream);
        yield Err(RouterError::IncompleteGenerationStream);
    };
    stream.boxed()
}

/// SSE of `/generate_stream`: always 200, errors as a final event, no `[DONE]`.
pub(crate) fn stream_response(state: AppState, req: GenerateRequest) -> Response {
    let headers = stream_headers(&state, &req.inputs);
    let events = stream_responses(state, req, true).map(|item| match item {
        Ok(response) => sse::json_event(&response),
        Err(err) => sse::error_event(&err),
    });
    sse::response(headers, events)
}

/// Generate tokens.
#[utoipa::path(post, path = "/generate", tag = "Text Generation Inference",
    request_body = GenerateRequest,
    responses((status = 200, body = GenerateResponse), (status = 422, body = crate::api::ErrorResponse),
              (status = 424, body = crate::api::ErrorResponse), (status = 429, body = crate::api::ErrorResponse)))]
pub async fn generate(State(state): State<AppState>, Json(req): Json<GenerateRequest>) -> Response {
    match generate_internal(&state, req, true).await {
        Ok((headers, _, response)) => (headers, Json(response)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Generate a stream of tokens (server-sent events).
#[utoipa::path(post, path = "/generate_stream", tag = "Text Generation Inference",
    request_body = GenerateRequest,
    responses((status = 200, body = StreamResponse, content_type = "text/event-stream")))]
pub async fn generate_stream(
    State(state): State<AppState>,
    Json(req): Json<GenerateRequest>,
) -> Response {
    stream_response(state, req)
}

/// Answers a compat request (array for non-stream, SSE for stream).
pub(crate) async fn compat_response(state: AppState, mut req: CompatGenerateRequest) -> Response {
    if req.parameters.return_full_text.is_none() {
        req.parameters.return_full_text = Some(state.default_return_full_text);
    }
    if req.stream {
        stream_response(state, req.into())
    } else {
        match generate_internal(&state, req.into(), true).await {
            Ok((headers, _, response)) => (headers, Json(vec![response])).into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// Generate tokens if `stream == false` (JSON array) or a stream of tokens if `stream == true`.
#[utoipa::path(post, path = "/", tag = "Text Generation Inference",
    request_body = CompatGenerateRequest,
    responses((status = 200, body = Vec<GenerateResponse>)))]
pub async fn compat_generate(
    State(state): State<AppState>,
    Json(req): Json<CompatGenerateRequest>,
) -> Response {
    compat_response(state, req).await
}
