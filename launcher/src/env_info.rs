//! `-e/--env`: the runtime facts a bug report needs, printed before starting.

use std::fmt;

/// Runtime environment summary.
pub struct EnvInfo {
    version: &'static str,
    target: String,
    cpus: usize,
    memory: Option<String>,
    gpus: Option<String>,
}

impl EnvInfo {
    /// Collects the summary from this machine.
    pub fn collect() -> EnvInfo {
        let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        });
        let gpus = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .replace('\n', "; ")
            });
        EnvInfo {
            version: env!("CARGO_PKG_VERSION"),
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            gpus,
        }
    }
}

impl fmt::Display for EnvInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Runtime environment:")?;
        writeln!(f, "Version: {}", self.version)?;
        writeln!(f, "Target: {}", self.target)?;
        writeln!(f, "CPUs: {}", self.cpus)?;
        writeln!(f, "Memory: {}", self.memory.as_deref().unwrap_or("N/A"))?;
        write!(f, "GPUs: {}", self.gpus.as_deref().unwrap_or("N/A"))
    }
}
