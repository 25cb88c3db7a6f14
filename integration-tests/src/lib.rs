//! End-to-end tests that start the real binaries (land with their issue).
