//! Rust client for tgi-rs and Text Generation Inference endpoints.
//!
//! ```no_run
//! use futures::StreamExt;
//! use text_generation_client::{Client, GenerateRequest};
//!
//! # async fn demo() -> text_generation_client::Result<()> {
//! let client = Client::builder("http://127.0.0.1:3000").bearer_token("secret").build()?;
//! let answer = client.generate(&GenerateRequest::new("Hello").max_new_tokens(8)).await?;
//! println!("{}", answer.generated_text);
//!
//! let mut stream = client.generate_stream(&GenerateRequest::new("Hello")).await?;
//! while let Some(event) = stream.next().await {
//!     print!("{}", event?.token.text);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Errors come back typed: a `422` with `{"error": "Input validation error: ...",
//! "error_type": "validation"}` is [`ClientError::Validation`], an error event in the middle of
//! a stream is an `Err` item, and so on (see [`ClientError`]).

mod client;
mod error;
mod sse;
pub mod types;

pub use client::{Client, ClientBuilder};
pub use error::{ClientError, ErrorBody, Result};
pub use sse::{EventStream, SseParser};
pub use types::*;
