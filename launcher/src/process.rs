//! One supervised child process: its own process group (so a terminal's Ctrl-C reaches only the
//! launcher, and teardown reaches grandchildren too), death signal tied to the launcher (no
//! orphans even if the launcher is SIGKILLed), output forwarded line by line with the last lines
//! kept for the crash report, and TGI's termination (SIGTERM, grace period, SIGKILL).

use crate::error::LauncherError;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines of output kept for the crash report.
const TAIL_LINES: usize = 20;

/// Forwards one output line and returns the text to keep for the crash report (None: keep
/// nothing).
pub type LineHandler = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Shared ring of the last lines a child wrote.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == TAIL_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    /// A copy of the kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A spawned, supervised child.
pub struct Supervised {
    /// Who it is in messages ("shard 0", "webserver").
    pub name: String,
    child: Child,
    pgid: Pid,
    status: Option<ExitStatus>,
    tail: Tail,
    readers: Vec<JoinHandle<()>>,
}

/// `exit status 1` / `killed by signal 9 (SIGKILL)`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

impl Supervised {
    /// Spawns `cmd` in its own process group with both output streams forwarded through
    /// `on_line`.
    pub fn spawn(
        name: impl Into<String>,
        mut cmd: Command,
        on_line: LineHandler,
    ) -> Result<Supervised, LauncherError> {
        let name = name.into();
        let launcher = nix::unistd::getpid();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                if nix::unistd::getppid() != launcher {
                    return Err(std::io::Error::other("the launcher exited during spawn"));
                }
                Ok(())
            });
        }
        let program = std::path::PathBuf::from(cmd.get_program());
        let mut child = cmd.spawn().map_err(|source| LauncherError::Spawn {
            who: name.clone(),
            program,
            source,
        })?;
        let pgid = Pid::from_raw(child.id() as i32);
        let tail = Tail::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(forward(out, on_line.clone(), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(forward(err, on_line, tail.clone()));
        }
        Ok(Supervised {
            name,
            child,
            pgid,
            status: None,
            tail,
            readers,
        })
    }

    /// The exit status if the child has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status
    }

    /// Last output lines, after giving the readers a moment to drain the pipes.
    pub fn last_lines(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && self.readers.iter().any(|r| !r.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.tail.lines()
    }

    /// SIGTERM to the group if the child still runs, without waiting.
    pub fn request_stop(&mut self) {
        if self.try_exit().is_none() {
            let _ = killpg(self.pgid, Signal::SIGTERM);
        }
    }

    /// SIGTERM to the group, up to `grace` for the child to exit, then SIGKILL to the group.
    /// Returns the child's exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_exit().is_none() {
            tracing::info!("Terminating {}", self.name);
            let _ = killpg(self.pgid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.try_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.try_exit().is_none() {
                tracing::warn!(
                    "{} did not stop within {}s, killing it",
                    self.name,
                    grace.as_secs()
                );
                let _ = killpg(self.pgid, Signal::SIGKILL);
                if let Ok(status) = self.child.wait() {
                    self.status = Some(status);
                }
            }
        }
        // Whatever the child left in its group goes too.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        self.status
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Last resort on error paths: never leave a child behind.
        if self.try_exit().is_none() {
            let _ = killpg(self.pgid, Signal::SIGKILL);
            let _ = self.child.wait();
        } else {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

fn forward(stream: impl Read + Send + 'static, on_line: LineHandler, tail: Tail) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if let Some(kept) = on_line(line) {
                        tail.push(kept);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let mut p = Supervised::spawn("test", cmd, Arc::new(|l| Some(l.to_string()))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.try_exit().map(describe).as_deref(), Some("exit code 3"));
        let mut lines = p.last_lines();
        lines.sort();
        assert_eq!(lines, vec!["err", "out"]);
    }

    #[test]
    fn terminate_escalates_to_sigkill() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; while true; do sleep 0.05; done"]);
        let mut p = Supervised::spawn("stubborn", cmd, Arc::new(|_| None)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let status = p.terminate(Duration::from_millis(300)).unwrap();
        assert_eq!(describe(status), "killed by signal 9 (SIGKILL)");
    }
}
