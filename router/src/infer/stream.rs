//! One continuous client stream over several scheduling passes: a pass ends at 1024 tokens
//! with `length`, the text so far is appended to the prompt and the rest is re-queued.

use super::types::{GeneratedText, InferStreamResponse, ValidGenerateRequest};
use super::{Backend, ResponseStream};
use crate::api::GenerateRequest;
use crate::error::RouterError;
use crate::infer::types::FinishReason;
use crate::validation::Validation;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Everything needed to re-queue the next pass of a request.
pub struct Continuation {
    pub first: ResponseStream,
    pub request: GenerateRequest,
    pub valid: ValidGenerateRequest,
    pub add_special_tokens: bool,
    pub validation: Validation,
    pub backend: Arc<dyn Backend>,
    pub health: Arc<AtomicBool>,
    /// Held for the whole stream: dropped (released) when the client goes away.
    pub permit: OwnedSemaphorePermit,
}

/// Builds the client-facing stream.
pub fn continuous(c: Continuation) -> BoxStream<'static, Result<InferStreamResponse, RouterError>> {
    let Continuation {
        first,
        request,
        valid,
        add_special_tokens,
        validation,
        backend,
        health,
        permit,
    } = c;
    let total_new_tokens = valid.stopping_parameters.max_total_new_tokens;
    let seed = valid.parameters.seed;
    let original_inputs = request.inputs.clone();
    let stream = async_stream::stream! {
        let _permit = permit;
        let mut current = first;
        let mut generated_so_far = String::new();
        let mut tokens_so_far: u32 = 0;
        let mut first_times = None;
        let mut pass = 0usize;
        while let Some(message) = current.next().await {
            match message {
                Err(err) => {
                    health.store(false, Ordering::SeqCst);
                    yield Err(err);
                    return;
                }
                Ok(InferStreamResponse::Prefill(p)) => {
                    if pass == 0 {
                        yield Ok(InferStreamResponse::Prefill(p));
                    }
                }
                Ok(InferStreamResponse::Intermediate { token, top_tokens }) => {
                    yield Ok(InferStreamResponse::Intermediate { token, top_tokens });
                }
                Ok(InferStreamResponse::End { token, top_tokens, generated_text, start, queued }) => {
                    let (start, queued) = *first_times.get_or_insert((start, queued));
                    tokens_so_far += generated_text.generated_tokens;
                    generated_so_far.push_str(&generated_text.text);
                    if generated_text.finish_reason == FinishReason::Length
                        && tokens_so_far < total_new_tokens
                    {
                        let mut next = request.clone();
                        next.inputs = format!("{original_inputs}{generated_so_far}");
                        next.parameters.max_new_tokens = Some(total_new_tokens - tokens_so_far);
                        next.parameters.seed = Some(seed);
                        next.parameters.best_of = None;
                        let rescheduled = match validation.validate(next, add_special_tokens).await {
                            Ok(v) => backend.schedule(v).ok(),
                            Err(err) => {
                                tracing::debug!("stopping after pass {pass}: {err}");
                                None
                            }
                        };
                        if let Some(next_stream) = rescheduled {
                            current = next_stream;
                            pass += 1;
                            yield Ok(InferStreamResponse::Intermediate { token, top_tokens });
                            continue;
                        }
                    }
                    yield Ok(InferStreamResponse::End {
                        token,
                        top_tokens,
                        generated_text: GeneratedText {
                            text: generated_so_far.clone(),
                            generated_tokens: tokens_so_far,
                            finish_reason: generated_text.finish_reason,
                            seed: generated_text.seed,
                        },
                        start,
                        queued,
                    });
                    return;
                }
            }
        }
        // The backend closed the stream without an End: the consumer reports it.
    };
    stream.boxed()
}
