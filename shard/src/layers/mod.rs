//! Building blocks shared by every architecture.

pub mod attention;
pub mod linear;
pub mod mlp;
pub mod quantized;
pub mod rms_norm;
pub mod rotary;
