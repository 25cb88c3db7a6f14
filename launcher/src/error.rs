//! The launcher's single error type: every variant says what went wrong and what to do.

use std::path::PathBuf;

/// Everything that makes the launcher exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// A flag combination TGI rejects, or a value that cannot be honoured.
    #[error("Argument validation error: {0}")]
    ArgumentValidation(String),
    /// A flag this build accepts for compatibility but cannot honour.
    #[error("{flag} is not supported by tgi-rs: {hint}")]
    Unsupported { flag: &'static str, hint: String },
    /// `--model-id` does not resolve to anything on disk.
    #[error("model `{model_id}` not found: {hint}")]
    ModelNotFound { model_id: String, hint: String },
    /// A child binary could not be located.
    #[error("cannot find `{name}`: looked next to the launcher ({}) and on PATH; build it with `cargo build --release --bins` or put it on PATH", dir.display())]
    BinaryNotFound { name: &'static str, dir: PathBuf },
    /// A child process could not be spawned.
    #[error("cannot start {who} ({}): {source}", program.display())]
    Spawn {
        who: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A shard exited before its socket appeared.
    #[error("Shard {rank} failed to start ({status}){}", stderr_tail(.stderr))]
    ShardCannotStart {
        rank: usize,
        status: String,
        stderr: Vec<String>,
    },
    /// A shard exited while serving.
    #[error("Shard {rank} crashed ({status}){}", stderr_tail(.stderr))]
    ShardFailed {
        rank: usize,
        status: String,
        stderr: Vec<String>,
    },
    /// The router exited while serving (or during its startup).
    #[error("Webserver Crashed ({status}){}", stderr_tail(.output))]
    WebserverFailed { status: String, output: Vec<String> },
    /// Installing signal handlers or signalling a child failed.
    #[error("{context}: {source}")]
    Signal {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// Any other I/O failure (socket cleanup, reading the model config).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("; last output lines:");
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_message_names_the_shard_and_its_last_lines() {
        let e = LauncherError::ShardFailed {
            rank: 1,
            status: "killed by SIGKILL".into(),
            stderr: vec!["loading".into(), "boom".into()],
        };
        assert_eq!(
            e.to_string(),
            "Shard 1 crashed (killed by SIGKILL); last output lines:\n    loading\n    boom"
        );
    }
}
