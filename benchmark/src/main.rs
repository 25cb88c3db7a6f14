//! Placeholder until this crate lands with its issue.
fn main() {}
