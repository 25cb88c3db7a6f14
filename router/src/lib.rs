//! tgi-rs router: TGI's HTTP API in front of continuous batching over gRPC shards.

pub mod api;
pub mod chat_template;
pub mod cli;
pub mod client;
pub mod error;
pub mod http;
pub mod infer;
pub mod model_files;
pub mod scheduler;
pub mod startup;
pub mod validation;

#[cfg(test)]
mod test_util;

/// Crate version reported by `/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
