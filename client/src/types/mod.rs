//! Request and response bodies, with TGI's field names and omissions.

mod chat;
mod generate;
mod sagemaker;

pub use chat::*;
pub use generate::*;
pub use sagemaker::*;
