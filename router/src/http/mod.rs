//! The HTTP layer: one file per route family. It sees `Infer` and API types, never wire types.

pub mod error;
pub mod generate;
pub mod info;
pub mod metrics;
pub mod openai_chat;
pub mod openai_completions;
pub mod openapi;
pub mod sagemaker;
pub mod server;
pub mod sse;
pub mod tokenize;
pub mod tool_stream;
pub mod vertex;

#[cfg(test)]
mod tests;

pub use server::{router, AppState, ServerConfig};
