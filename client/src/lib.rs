//! Rust client for tgi-rs / TGI endpoints (lands with its issue).
