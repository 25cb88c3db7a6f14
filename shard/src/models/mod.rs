//! Model architectures (one file each) and the loader that picks one for a model path.

pub mod config;
pub mod decoder;
mod gguf_config;
pub mod llama;
pub mod loader;
pub mod mistral;
pub mod qwen2;

pub use decoder::{DecoderModel, ForwardInput, ForwardTensors};
pub use loader::{load_model, LoadOptions, LoadedModel};
