//! Process inspection through /proc: the launcher's descendants, and whether they still live.

use std::path::Path;

/// One process, identified by pid and start time (pids are reused).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub start_time: u64,
    pub cmdline: String,
}

impl ProcInfo {
    /// Reads `/proc/<pid>`; None if it is gone.
    pub fn read(pid: u32) -> Option<ProcInfo> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state): ppid is field 4, pgrp 5, starttime 22.
        let state = fields.first()?;
        if *state == "Z" || *state == "X" {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\0')
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Some(ProcInfo {
            pid,
            ppid: fields.get(1)?.parse().ok()?,
            pgid: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
            cmdline: cmdline.trim().to_string(),
        })
    }

    /// True while the same process (same pid and start time) runs.
    pub fn is_alive(&self) -> bool {
        ProcInfo::read(self.pid).is_some_and(|p| p.start_time == self.start_time)
    }
}

/// Every live process.
pub fn all() -> Vec<ProcInfo> {
    std::fs::read_dir(Path::new("/proc"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(ProcInfo::read)
                .collect()
        })
        .unwrap_or_default()
}

/// Every live descendant of `root` (children, their children, …, and members of their
/// process groups).
pub fn descendants(root: u32) -> Vec<ProcInfo> {
    let procs = all();
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            if !out.iter().any(|o| o.pid == p.pid) {
                out.push(p.clone());
                frontier.push(p.pid);
            }
        }
    }
    let groups: Vec<u32> = out.iter().map(|p| p.pgid).collect();
    for p in procs.iter().filter(|p| groups.contains(&p.pgid)) {
        if !out.iter().any(|o| o.pid == p.pid) {
            out.push(p.clone());
        }
    }
    out
}

/// Live processes whose command line contains `needle` (the test's private directory).
pub fn with_cmdline_containing(needle: &str) -> Vec<ProcInfo> {
    let me = std::process::id();
    all()
        .into_iter()
        .filter(|p| p.pid != me && p.cmdline.contains(needle))
        .collect()
}
