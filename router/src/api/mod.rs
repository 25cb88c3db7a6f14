//! JSON request/response types of the HTTP API (TGI's field names, defaults and omissions).
//!
//! Kept apart from `http/` because validation and inference also read the request types.

pub mod generate;
pub mod openai;

pub use generate::*;
pub use openai::*;
