//! `POST /v1/completions`: each prompt is an independent generation; stream events interleave.

use super::generate::{generate_internal, stream_headers, stream_responses};
use super::openai_chat::{now_secs, sampling};
use super::server::AppState;
use super::sse;
use crate::api::{
    CompletionChunk, CompletionComplete, CompletionFinal, CompletionRequest, GenerateParameters,
    GenerateRequest, Usage,
};
use crate::error::RouterError;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;

fn to_generate(req: &CompletionRequest, prompt: String) -> GenerateRequest {
    let (do_sample, temperature) = sampling(req.temperature);
    GenerateRequest {
        inputs: prompt,
        parameters: GenerateParameters {
            temperature,
            repetition_penalty: req.repetition_penalty,
            frequency_penalty: req.frequency_penalty,
            top_p: req.top_p,
            do_sample,
            max_new_tokens: req.max_tokens,
            stop: req.stop.clone().unwrap_or_default(),
            details: true,
            decoder_input_details: !req.stream,
            seed: req.seed,
            ..Default::default()
        },
    }
}

/// Adds the numeric `x-*` headers of several answers, as TGI does for multi-prompt requests.
fn sum_headers(all: &[HeaderMap]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        "x-total-time",
        "x-validation-time",
        "x-queue-time",
        "x-inference-time",
        "x-time-per-token",
        "x-prompt-tokens",
        "x-generated-tokens",
        "x-compute-characters",
    ] {
        let total: u64 = all
            .iter()
            .filter_map(|h| h.get(name)?.to_str().ok()?.parse::<u64>().ok())
            .sum();
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            out.insert(name, v);
        }
    }
    if let Some(v) = all.first().and_then(|h| h.get("x-compute-type")) {
        out.insert("x-compute-type", v.clone());
    }
    out
}

/// OpenAI legacy completions.
#[utoipa::path(post, path = "/v1/completions", tag = "Text Generation Inference",
    request_body = CompletionRequest,
    responses((status = 200, body = CompletionFinal), (status = 422, body = crate::api::ErrorResponse)))]
pub async fn completions(
    State(state): State<AppState>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    metrics::counter!("tgi_request_count").increment(1);
    if req.suffix.is_some() {
        metrics::counter!("tgi_request_failure", "err" => "validation").increment(1);
        return RouterError::SuffixNotSupported.into_response();
    }
    if req.prompt.0.len() > state.info.max_client_batch_size {
        metrics::counter!("tgi_request_failure", "err" => "validation").increment(1);
        return RouterError::ClientBatchSize(state.info.max_client_batch_size).into_response();
    }
    let model = state.info.model_id.clone();
    let fingerprint = state.system_fingerprint.clone();
    if req.stream {
        let headers = stream_headers(&state, &req.prompt.0.concat());
        let streams = req.prompt.0.iter().enumerate().map(|(i, prompt)| {
            stream_responses(state.clone(), to_generate(&req, prompt.clone()), true)
                .map(move |item| (i as u32, item))
                .boxed()
        });
        let mut merged = futures::stream::select_all(streams);
        let events = async_stream::stream! {
            while let Some((index, item)) = merged.next().await {
                match item {
                    Err(err) => { yield sse::openai_error_event(&err); return; }
                    Ok(r) => {
                        let created = now_secs();
                        let choice = |finish_reason: String| vec![CompletionComplete {
                            index, text: r.token.text.clone(), logprobs: None, finish_reason,
                        }];
                        match &r.details {
                            Some(d) => yield sse::json_event(&CompletionFinal {
                                object: "text_completion".into(),
                                id: String::new(),
                                created,
                                model: model.clone(),
                                system_fingerprint: fingerprint.clone(),
                                choices: choice(d.finish_reason.as_str().to_string()),
                                usage: Usage {
                                    prompt_tokens: d.input_length,
                                    completion_tokens: d.generated_tokens,
                                    total_tokens: d.input_length + d.generated_tokens,
                                },
                            }),
                            None => yield sse::json_event(&CompletionChunk {
                                object: "text_completion".into(),
                                id: String::new(),
                                created,
                                choices: choice(String::new()),
                                model: model.clone(),
                                system_fingerprint: fingerprint.clone(),
                            }),
                        }
                    }
                }
            }
            yield sse::done_event();
        };
        return sse::response(headers, events);
    }
    let runs = req
        .prompt
        .0
        .iter()
        .map(|prompt| generate_internal(&state, to_generate(&req, prompt.clone()), true));
    let mut headers = Vec::new();
    let mut choices = Vec::new();
    let mut usage = Usage::default();
    for (index, result) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        let (h, input_length, response) = match result {
            Ok(r) => r,
            Err(err) => return err.into_response(),
        };
        let Some(details) = response.details else {
            return RouterError::IncompleteGeneration.into_response();
        };
        usage.prompt_tokens += input_length;
        usage.completion_tokens += details.generated_tokens;
        choices.push(CompletionComplete {
            index: index as u32,
            text: response.generated_text,
            logprobs: None,
            finish_reason: details.finish_reason.openai().to_string(),
        });
        headers.push(h);
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    let body = CompletionFinal {
        object: "text_completion".into(),
        id: String::new(),
        created: now_secs(),
        model,
        system_fingerprint: fingerprint,
        choices,
        usage,
    };
    (sum_headers(&headers), Json(body)).into_response()
}
