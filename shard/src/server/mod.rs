//! The gRPC service (TGI's `TextGenerationService` v3) over the engine, and the Unix-socket
//! server lifecycle.

mod convert;
mod service;

pub use service::ShardService;
