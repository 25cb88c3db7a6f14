//! The shard's error type: loading, engine and request errors, each with the context a user
//! needs to act on.

use std::path::PathBuf;

/// Every error the shard can report.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    // ---- loading ----
    /// A file the model needs is missing.
    #[error("{what} not found at {path}")]
    MissingFile {
        /// What the file is (e.g. "config.json").
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file exists but could not be read or parsed.
    #[error("cannot read {path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `config.json` names an architecture this shard does not implement.
    #[error("unsupported model architecture `{name}`: supported are {supported}")]
    UnsupportedArchitecture {
        /// The architecture or model_type found.
        name: String,
        /// The list of supported ones.
        supported: &'static str,
    },
    /// A config value is missing or invalid.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// A weight tensor is missing.
    #[error("tensor `{name}` not found in {source_desc}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Where it was looked for.
        source_desc: String,
    },
    /// A weight tensor has an unexpected shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape on disk.
        found: Vec<usize>,
    },
    /// The model cannot be split over the requested number of shards.
    #[error("cannot shard: {0}")]
    Sharding(String),
    /// Tokenizer loading or use failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    // ---- engine / requests ----
    /// Prefill/Decode before Warmup sized the KV cache.
    #[error("the KV cache is not allocated yet: call Warmup first")]
    NotWarmedUp,
    /// A batch id that is not in the shard's cache.
    #[error("batch {0} not found in the shard's cache")]
    BatchNotFound(u64),
    /// A request in an RPC is malformed.
    #[error("request {id}: {message}")]
    InvalidRequest {
        /// Request id.
        id: u64,
        /// What is wrong.
        message: String,
    },
    /// An RPC argument is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not enough free KV blocks for a request the shard allocates itself.
    #[error("not enough KV cache blocks: request {id} needs {needed}, {free} free")]
    OutOfBlocks {
        /// Request id.
        id: u64,
        /// Blocks needed.
        needed: usize,
        /// Blocks free.
        free: usize,
    },
    /// Warmup could not fit the requested prefill.
    #[error("Not enough memory to handle {0} prefill tokens. You need to decrease `--max-batch-prefill-tokens`")]
    WarmupTooLarge(u32),
    /// Tensor-parallel communication failed.
    #[error("communicator: {0}")]
    Communication(String),
    /// Filesystem / socket error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Result alias for the shard.
pub type Result<T> = std::result::Result<T, ShardError>;

impl ShardError {
    /// A bad-request error for request `id`.
    pub fn invalid_request(id: u64, message: impl Into<String>) -> Self {
        ShardError::InvalidRequest {
            id,
            message: message.into(),
        }
    }
}

impl From<ShardError> for tonic::Status {
    fn from(e: ShardError) -> Self {
        let msg = e.to_string();
        match e {
            ShardError::BatchNotFound(_) => tonic::Status::not_found(msg),
            ShardError::InvalidRequest { .. } | ShardError::InvalidArgument(_) => {
                tonic::Status::invalid_argument(msg)
            }
            ShardError::NotWarmedUp => tonic::Status::failed_precondition(msg),
            ShardError::OutOfBlocks { .. } | ShardError::WarmupTooLarge(_) => {
                tonic::Status::resource_exhausted(msg)
            }
            _ => tonic::Status::internal(msg),
        }
    }
}
