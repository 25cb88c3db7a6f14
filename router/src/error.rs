//! The crate's error vocabulary: TGI's messages, `error_type` strings and HTTP status codes.

use axum::http::StatusCode;

/// A request rejected by validation; displayed after `Input validation error: `.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("`best_of` must be > 0 and <= {0}. Given: {1}")]
    BestOf(usize, usize),
    #[error("`best_of` != 1 is not allowed for this endpoint")]
    BestOfDisabled,
    #[error("you must use sampling when `best_of` is > 1")]
    BestOfSampling,
    #[error("`seed` must not be set when `best_of` > 1")]
    BestOfSeed,
    #[error("`best_of` != 1 is not supported when streaming tokens")]
    BestOfStream,
    #[error("`top_n_tokens` must be >= 0 and <= {0}. Given: {1}")]
    TopNTokens(u32, u32),
    #[error("`top_n_tokens` != 0 is not allowed for this endpoint")]
    TopNTokensDisabled,
    #[error("`decoder_input_details` == true is not supported when streaming tokens")]
    PrefillDetailsStream,
    #[error("`temperature` must be strictly positive")]
    Temperature,
    #[error("`repetition_penalty` must be strictly positive")]
    RepetitionPenalty,
    #[error("`frequency_penalty` must be >= -2.0 and <= 2.0")]
    FrequencyPenalty,
    #[error("`top_p` must be > 0.0 and < 1.0")]
    TopP,
    #[error("`top_k` must be strictly positive")]
    TopK,
    #[error("`truncate` must be strictly positive and less than {0}. Given: {1}")]
    Truncate(usize, usize),
    #[error("`typical_p` must be > 0.0 and < 1.0")]
    TypicalP,
    #[error("one of `max_new_tokens` or `truncate` must be set if a fast tokenizer is not in use")]
    UnsetMaxNewTokens,
    #[error("`max_new_tokens` must be strictly positive")]
    NegativeMaxNewTokens,
    #[error("`max_new_tokens` must be <= {0}. Given: {1}")]
    MaxNewTokens(usize, u32),
    #[error("`inputs` tokens + `max_new_tokens` must be <= {0}. Given: {1} `inputs` tokens and {2} `max_new_tokens`")]
    MaxTotalTokens(usize, usize, u32),
    #[error("`inputs` must have less than {0} tokens. Given: {1}")]
    InputLength(usize, usize),
    #[error("`inputs` cannot be empty")]
    EmptyInput,
    #[error("`stop` supports up to {0} stop sequences. Given: {1}")]
    StopSequence(usize, usize),
    #[error("tokenizer error {0}")]
    Tokenizer(String),
    #[error("grammar is not supported")]
    Grammar,
    #[error("grammar is not valid: {0}")]
    InvalidGrammar(String),
    #[error("cannot compile regex from schema: {0}")]
    RegexFromSchema(String),
    #[error("Unsupported image type: {0}")]
    UnsupportedModality(&'static str),
    #[error("Could not fetch image: {0}")]
    FailedFetchImage(String),
}

/// A failed shard RPC (`tonic::Status` message) or connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("Could not connect to Text Generation server: {0}")]
    Connection(String),
    #[error("Server error: {0}")]
    Generation(String),
    #[error("Empty batch")]
    EmptyBatch,
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Generation(status.message().to_string())
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(err: tonic::transport::Error) -> Self {
        ClientError::Connection(err.to_string())
    }
}

/// Every failure the router reports, at startup or while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("Request failed during generation: {0}")]
    Generation(String),
    #[error("Model is overloaded")]
    Overloaded,
    #[error("Input validation error: {0}")]
    Validation(#[from] ValidationError),
    #[error("Incomplete generation")]
    IncompleteGeneration,
    #[error("Incomplete generation stream")]
    IncompleteGenerationStream,
    #[error("Template error: {0}")]
    Template(String),
    #[error("Missing template vatiable: {0}")]
    MissingTemplateVariable(String),
    #[error("Tool error: {0}")]
    Tool(String),
    #[error("Stream event serialization error")]
    StreamSerialization,
    #[error("unhealthy")]
    Unhealthy,
    /// Too many prompts in one `/v1/completions` request.
    #[error("Number of prompts exceeds the maximum allowed batch size of {0}")]
    ClientBatchSize(usize),
    #[error("Suffix is not supported and can be achieved by preprocessing the prompt.")]
    SuffixNotSupported,
    #[error("No fast tokenizer or tokenizer.json for this model")]
    NoTokenizer,
    /// Startup: a flag combination TGI rejects.
    #[error("Argument validation error: {0}")]
    ArgumentValidation(String),
    /// Startup: the shards could not be reached or answered with an error.
    #[error("Unable to connect to the Python model shards: {0}")]
    Connection(String),
    /// Startup: a shard RPC failed.
    #[error("Unable to warmup model: {0}")]
    Warmup(String),
    /// Startup: tokenizer or tokenizer config could not be read.
    #[error("Tokenizer error: {0}")]
    Tokenizer(String),
    /// Startup: the HTTP listener failed.
    #[error("Webserver error: {0}")]
    Webserver(String),
}

impl RouterError {
    /// The `error_type` string of TGI's error JSON (also the `err` label family).
    pub fn error_type(&self) -> &'static str {
        match self {
            RouterError::Generation(_) => "generation",
            RouterError::Overloaded => "overloaded",
            RouterError::Validation(_) => "validation",
            RouterError::IncompleteGeneration => "incomplete_generation",
            RouterError::IncompleteGenerationStream => "incomplete_generation_stream",
            RouterError::Template(_) => "template_error",
            RouterError::MissingTemplateVariable(_) => "missing_template_variable",
            RouterError::Tool(_) => "tool_error",
            RouterError::StreamSerialization => "stream_serialization_error",
            RouterError::Unhealthy => "healthcheck",
            RouterError::ClientBatchSize(_) => "batch size exceeded",
            RouterError::SuffixNotSupported => "suffix not supported",
            RouterError::NoTokenizer => "no fast tokenizer",
            RouterError::ArgumentValidation(_)
            | RouterError::Connection(_)
            | RouterError::Warmup(_)
            | RouterError::Tokenizer(_)
            | RouterError::Webserver(_) => "startup",
        }
    }

    /// The `err` label of `tgi_request_failure` for this error.
    pub fn failure_label(&self) -> &'static str {
        match self {
            RouterError::Generation(_) => "generation",
            RouterError::Overloaded => "overloaded",
            RouterError::Validation(_)
            | RouterError::ClientBatchSize(_)
            | RouterError::SuffixNotSupported => "validation",
            RouterError::IncompleteGeneration | RouterError::IncompleteGenerationStream => {
                "incomplete"
            }
            RouterError::Template(_) | RouterError::MissingTemplateVariable(_) => "template",
            _ => "generation",
        }
    }

    /// The HTTP status TGI answers this error with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            RouterError::Generation(_) => StatusCode::FAILED_DEPENDENCY,
            RouterError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            RouterError::Validation(_)
            | RouterError::Template(_)
            | RouterError::MissingTemplateVariable(_)
            | RouterError::Tool(_)
            | RouterError::ClientBatchSize(_)
            | RouterError::SuffixNotSupported => StatusCode::UNPROCESSABLE_ENTITY,
            RouterError::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            RouterError::NoTokenizer => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<minijinja::Error> for RouterError {
    fn from(err: minijinja::Error) -> Self {
        RouterError::Template(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_type_mapping_follow_tgi() {
        let cases: Vec<(RouterError, u16, &str, &str)> = vec![
            (
                RouterError::Generation("Server error: boom".into()),
                424,
                "generation",
                "Request failed during generation: Server error: boom",
            ),
            (
                RouterError::Overloaded,
                429,
                "overloaded",
                "Model is overloaded",
            ),
            (
                RouterError::Validation(ValidationError::EmptyInput),
                422,
                "validation",
                "Input validation error: `inputs` cannot be empty",
            ),
            (
                RouterError::IncompleteGeneration,
                500,
                "incomplete_generation",
                "Incomplete generation",
            ),
            (
                RouterError::IncompleteGenerationStream,
                500,
                "incomplete_generation_stream",
                "Incomplete generation stream",
            ),
            (
                RouterError::Template("template not found".into()),
                422,
                "template_error",
                "Template error: template not found",
            ),
            (
                RouterError::MissingTemplateVariable("x".into()),
                422,
                "missing_template_variable",
                "Missing template vatiable: x",
            ),
            (
                RouterError::Tool("t".into()),
                422,
                "tool_error",
                "Tool error: t",
            ),
            (
                RouterError::StreamSerialization,
                500,
                "stream_serialization_error",
                "Stream event serialization error",
            ),
            (RouterError::Unhealthy, 503, "healthcheck", "unhealthy"),
            (
                RouterError::ClientBatchSize(4),
                422,
                "batch size exceeded",
                "Number of prompts exceeds the maximum allowed batch size of 4",
            ),
            (
                RouterError::SuffixNotSupported,
                422,
                "suffix not supported",
                "Suffix is not supported and can be achieved by preprocessing the prompt.",
            ),
        ];
        for (err, status, ty, text) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{err:?}");
            assert_eq!(err.error_type(), ty);
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn failure_labels() {
        assert_eq!(RouterError::Overloaded.failure_label(), "overloaded");
        assert_eq!(
            RouterError::IncompleteGenerationStream.failure_label(),
            "incomplete"
        );
        assert_eq!(
            RouterError::Template("x".into()).failure_label(),
            "template"
        );
        assert_eq!(
            RouterError::Validation(ValidationError::TopK).failure_label(),
            "validation"
        );
    }

    #[test]
    fn validation_messages_with_values() {
        assert_eq!(
            ValidationError::MaxTotalTokens(20, 15, 10).to_string(),
            "`inputs` tokens + `max_new_tokens` must be <= 20. Given: 15 `inputs` tokens and 10 `max_new_tokens`"
        );
        assert_eq!(
            ValidationError::StopSequence(4, 5).to_string(),
            "`stop` supports up to 4 stop sequences. Given: 5"
        );
    }
}
