//! The Backend seam and `Infer`: concurrency limit, validation, scheduling, streaming to clients.

pub mod stream;
pub mod types;

use crate::api::{GenerateRequest, Message, Tool};
use crate::chat_template::ChatTemplate;
use crate::error::RouterError;
use crate::validation::Validation;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::UnboundedReceiverStream;
use types::{GeneratedText, InferStreamResponse, PrefillToken, Token, ValidGenerateRequest};

/// What a backend streams back for one request.
pub type ResponseStream = UnboundedReceiverStream<Result<InferStreamResponse, RouterError>>;

/// A generation engine. The HTTP layer only knows this trait, never wire types.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Queues a validated request; dropping the returned stream cancels it.
    fn schedule(&self, request: ValidGenerateRequest) -> Result<ResponseStream, RouterError>;

    /// Checks the engine; `current_health` is the last known state (cheap check when healthy).
    async fn health(&self, current_health: bool) -> bool;
}

/// A scheduled request: its prompt length and its continuous response stream.
pub struct GenerateStream {
    /// Prompt length in tokens.
    pub input_length: u32,
    /// Prefill, token and end messages; dropping it cancels the request and frees its permit.
    pub stream: BoxStream<'static, Result<InferStreamResponse, RouterError>>,
}

/// A finished non-streamed generation.
#[derive(Debug, Clone)]
pub struct InferResponse {
    pub input_length: u32,
    pub prefill: Vec<PrefillToken>,
    pub tokens: Vec<Token>,
    pub top_tokens: Vec<Vec<Token>>,
    pub generated_text: GeneratedText,
    pub queued: Instant,
    pub start: Instant,
}

/// Entry point used by every route.
#[derive(Clone)]
pub struct Infer {
    validation: Validation,
    backend: Arc<dyn Backend>,
    chat_template: Option<Arc<ChatTemplate>>,
    limit_concurrent_requests: Arc<Semaphore>,
    backend_health: Arc<AtomicBool>,
}

impl Infer {
    /// Wires validation, a backend and the optional chat template together.
    pub fn new(
        backend: Arc<dyn Backend>,
        validation: Validation,
        max_concurrent_requests: usize,
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        Infer {
            validation,
            backend,
            chat_template: chat_template.map(Arc::new),
            limit_concurrent_requests: Arc::new(Semaphore::new(max_concurrent_requests)),
            backend_health: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The validator (for `/tokenize` and limits).
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Validates and schedules a request; the stream is continuous across 1024-token passes.
    pub async fn generate_stream(
        &self,
        request: GenerateRequest,
        add_special_tokens: bool,
    ) -> Result<GenerateStream, RouterError> {
        let permit = match self.limit_concurrent_requests.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics::counter!("tgi_request_failure", "err" => "overloaded").increment(1);
                tracing::error!("Model is overloaded");
                return Err(RouterError::Overloaded);
            }
        };
        let valid = match self
            .validation
            .validate(request.clone(), add_special_tokens)
            .await
        {
            Ok(valid) => valid,
            Err(err) => {
                metrics::counter!("tgi_request_failure", "err" => "validation").increment(1);
                tracing::error!("{err}");
                return Err(err.into());
            }
        };
        let input_length = valid.input_length;
        metrics::histogram!("tgi_request_input_length").record(input_length as f64);
        metrics::histogram!("tgi_request_max_new_tokens")
            .record(valid.stopping_parameters.max_new_tokens as f64);
        let first = self.backend.schedule(valid.clone())?;
        let stream = stream::continuous(stream::Continuation {
            first,
            request,
            valid,
            add_special_tokens,
            validation: self.validation.clone(),
            backend: self.backend.clone(),
            health: self.backend_health.clone(),
            permit,
        });
        Ok(GenerateStream {
            input_length,
            stream,
        })
    }

    /// Runs a request to completion.
    pub async fn generate(
        &self,
        request: GenerateRequest,
        add_special_tokens: bool,
    ) -> Result<InferResponse, RouterError> {
        let GenerateStream {
            input_length,
            mut stream,
        } = self.generate_stream(request, add_special_tokens).await?;
        let mut prefill = Vec::new();
        let mut tokens = Vec::new();
        let mut top_tokens = Vec::new();
        while let Some(message) = stream.next().await {
            match message {
                Err(err) => {
                    metrics::counter!("tgi_request_failure", "err" => err.failure_label())
                        .increment(1);
                    return Err(err);
                }
                Ok(InferStreamResponse::Prefill(p)) => prefill = p,
                Ok(InferStreamResponse::Intermediate {
                    token,
                    top_tokens: t,
                }) => {
                    tokens.push(token);
                    top_tokens.push(t);
                }
                Ok(InferStreamResponse::End {
                    token,
                    top_tokens: t,
                    generated_text,
                    start,
                    queued,
                }) => {
                    tokens.push(token);
                    top_tokens.push(t);
                    if top_tokens.iter().all(|t| t.is_empty()) {
                        top_tokens.clear();
                    }
                    return Ok(InferResponse {
                        input_length,
                        prefill,
                        tokens,
                        top_tokens,
                        generated_text,
                        queued,
                        start,
                    });
                }
            }
        }
        metrics::counter!("tgi_request_failure", "err" => "incomplete").increment(1);
        tracing::error!("{}", RouterError::IncompleteGeneration);
        Err(RouterError::IncompleteGeneration)
    }

    /// Runs `best_of` sampled copies; returns the best (highest mean logprob) and the others.
    pub async fn generate_best_of(
        &self,
        request: GenerateRequest,
        best_of: usize,
    ) -> Result<(InferResponse, Vec<InferResponse>), RouterError> {
        let best_of = self.validation.validate_best_of(best_of)?;
        let runs = (0..best_of).map(|_| self.generate(request.clone(), true));
        let mut responses = Vec::with_capacity(best_of);
        for result in futures::future::join_all(runs).await {
            responses.push(result?);
        }
        let mean = |r: &InferResponse| {
            let n = r.tokens.len().max(1) as f32;
            r.tokens.iter().map(|t| t.logprob).sum::<f32>() / n
        };
        let mut best_index = 0;
        for (i, r) in responses.iter().enumerate() {
            if mean(r) > mean(&responses[best_index]) {
                best_index = i;
            }
        }
        let best = responses.remove(best_index);
        Ok((best, responses))
    }

    /// Renders a chat conversation into a prompt.
    pub fn apply_chat_template(
        &self,
        messages: Vec<Message>,
        tools: Option<(Vec<Tool>, String)>,
    ) -> Result<String, RouterError> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| RouterError::Template("template not found".to_string()))?;
        template.apply(messages, tools).map_err(|err| {
            metrics::counter!("tgi_request_failure", "err" => "template").increment(1);
            tracing::error!("{err}");
            err
        })
    }

    /// Health check: cheap when the last state was healthy, a real prefill otherwise.
    pub async fn health(&self) -> bool {
        let current = self.backend_health.load(Ordering::SeqCst);
        let healthy = self.backend.health(current).await;
        self.backend_health.store(healthy, Ordering::SeqCst);
        healthy
    }
}
