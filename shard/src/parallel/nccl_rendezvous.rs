//! Rendezvous of the NCCL communicator: rank 0 publishes NCCL's unique id in the rendezvous
//! directory (`<uds-path>-comm/nccl-id`), the other ranks wait for it.
//!
//! Plain bytes and files, no CUDA: this compiles and is tested in every build.
//!
//! - The file is written to a temporary name and renamed into place, so a reader sees either
//!   no file or the whole file.
//! - A file left by an earlier run must not be taken for the current one (NCCL would wait
//!   forever for a group that no longer exists). The file therefore names its publisher
//!   (pid and start time from `/proc`); a reader accepts it only while that process is
//!   alive, and otherwise keeps waiting for the current rank 0 to replace it.
//! - Rank 0 removes the file once every rank joined ([`remove`]).

use crate::error::{Result, ShardError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the id file inside the rendezvous directory.
pub const ID_FILE: &str = "nccl-id";

/// Opens the id file ("TGINCCL" and a format version).
const MAGIC: [u8; 8] = *b"TGINCCL\x01";
/// Magic, world size, publisher pid, publisher start time, id length.
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 4;
/// Pause between polls while the id is missing.
const POLL: Duration = Duration::from_millis(10);

/// The id file in the rendezvous directory `dir`.
pub fn id_path(dir: &Path) -> PathBuf {
    dir.join(ID_FILE)
}

/// Publishes `id` for a group of `world` ranks in `dir` (created if missing), atomically
/// replacing any earlier file. Called by rank 0; returns the file's path.
pub fn publish(dir: &Path, world: usize, id: &[u8]) -> Result<PathBuf> {
    let io = |context: String| move |source| ShardError::Io { context, source };
    std::fs::create_dir_all(dir).map_err(io(format!(
        "creating the rendezvous directory {}",
        dir.display()
    )))?;
    let pid = std::process::id();
    let bytes = encode(world, pid, start_time(pid).unwrap_or(0), id)?;
    let path = id_path(dir);
    let tmp = dir.join(format!(".{ID_FILE}.{pid}.tmp"));
    std::fs::write(&tmp, &bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ShardError::Io {
            context: format!("publishing the NCCL id as {}", path.display()),
            source,
        }
    })?;
    Ok(path)
}

/// Waits up to `timeout` for the id rank 0 published in `dir` for a group of `world` ranks
/// and returns its bytes (`len` of them). Files whose publisher is no longer running are
/// ignored; a live publisher with another world size or id length is an error at once.
pub fn wait(
    dir: &Path,
    rank: usize,
    world: usize,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let path = id_path(dir);
    let deadline = Instant::now() + timeout;
    let mut seen = Seen::Nothing;
    loop {
        match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Some(f) if publisher_alive(f.pid, f.start) => {
                    if f.world != world || f.id.len() != len {
                        return Err(ShardError::Communication(format!(
                            "rank {rank} of {world}: {} was published by process {} for {} \
                             ranks with a {}-byte id; expected {world} ranks and {len} bytes \
                             (are two models sharing --uds-path?)",
                            path.display(),
                            f.pid,
                            f.world,
                            f.id.len()
                        )));
                    }
                    return Ok(f.id.to_vec());
                }
                Some(f) => seen = Seen::Exited(f.pid),
                None => seen = Seen::Unreadable,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ShardError::Io {
                    context: format!("rank {rank}: reading the NCCL id {}", path.display()),
                    source,
                })
            }
        }
        if Instant::now() >= deadline {
            let note = match seen {
                Seen::Nothing => String::new(),
                Seen::Unreadable => {
                    " (only an unreadable file from another program or version)".into()
                }
                Seen::Exited(pid) => {
                    format!(" (only a stale file from process {pid}, which has exited)")
                }
            };
            return Err(ShardError::Communication(format!(
                "rank {rank} of {world}: rank 0 did not publish the NCCL unique id at {} within \
                 {timeout:?} (--rendezvous-timeout){note}; did rank 0 start, with the same \
                 --uds-path?",
                path.display()
            )));
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Removes the id file of `dir` (rank 0, once the group is formed). A missing file is fine.
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(id_path(dir));
}

/// What a waiting rank found at the id path, for the timeout message.
enum Seen {
    Nothing,
    Unreadable,
    Exited(u32),
}

/// A decoded id file.
struct IdFile<'a> {
    world: usize,
    pid: u32,
    start: u64,
    id: &'a [u8],
}

fn encode(world: usize, pid: u32, start: u64, id: &[u8]) -> Result<Vec<u8>> {
    let too_big = |what: &str| ShardError::Communication(format!("{what} does not fit 32 bits"));
    let world = u32::try_from(world).map_err(|_| too_big("the world size"))?;
    let len = u32::try_from(id.len()).map_err(|_| too_big("the NCCL id length"))?;
    let mut b = Vec::with_capacity(HEADER_LEN + id.len());
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&world.to_le_bytes());
    b.extend_from_slice(&pid.to_le_bytes());
    b.extend_from_slice(&start.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(id);
    Ok(b)
}

fn decode(b: &[u8]) -> Option<IdFile<'_>> {
    if b.len() < HEADER_LEN || b[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| b.get(i..i + 4)?.try_into().ok().map(u32::from_le_bytes);
    let start = u64::from_le_bytes(b.get(16..24)?.try_into().ok()?);
    let len = u32_at(24)? as usize;
    let id = b.get(HEADER_LEN..)?;
    if id.len() != len {
        return None;
    }
    Some(IdFile {
        world: u32_at(8)? as usize,
        pid: u32_at(12)?,
        start,
        id,
    })
}

/// Whether process `pid` is running and (when `start` is known) is the one that started at
/// `start`, so that a recycled pid does not revive a stale file.
fn publisher_alive(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Some(now) => start == 0 || now == start,
        None => false,
    }
}

/// Start time of process `pid` in clock ticks since boot (`/proc/<pid>/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 128] = {
        let mut id = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            id[i] = (i * 7 + 3) as u8;
            i += 1;
        }
        id
    };

    #[test]
    fn a_published_id_reaches_the_waiting_rank() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ShardError::Communication(e.to_string()))?;
        let path = publish(dir.path(), 2, &ID)?;
        assert_eq!(path, id_path(dir.path()));
        let got = wait(dir.path(), 1, 2, ID.len(), Duration::from_secs(5))?;
        assert_eq!(got, ID);
        // Only the final name is left behind, no temporary file.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| ShardError::Communication(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(ID_FILE)]);
        remove(dir.path());
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn a_waiting_rank_sees_an_id_published_later() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ShardError::Communication(e.to_string()))?;
        // The directory does not exist yet when the waiter starts polling.
        let rendezvous = dir.path().join("base-comm");
        let publisher = {
            let rendezvous = rendezvous.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                publish(&rendezvous, 3, &ID)
            })
        };
        let got = wait(&rendezvous, 2, 3, ID.len(), Duration::from_secs(10))?;
        assert_eq!(got, ID);
        assert!(publisher.join().is_ok_and(|r| r.is_ok()));
        Ok(())
    }

    #[test]
    fn times_out_naming_the_path_and_the_timeout() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory")
        };
        let started = Instant::now();
        let err = wait(dir.path(), 1, 2, ID.len(), Duration::from_millis(150));
        let Err(ShardError::Communication(msg)) = err else {
            panic!("expected a communication error, got {err:?}")
        };
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(
            msg.contains(&id_path(dir.path()).display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("150ms") && msg.contains("--rendezvous-timeout"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_from_an_exited_publisher_is_ignored() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ShardError::Communication(e.to_string()))?;
        // pid_max is at most 2^22 on Linux: this pid never runs.
        let stale = encode(2, u32::MAX, 1, &ID)?;
        std::fs::write(id_path(dir.path()), stale)
            .map_err(|e| ShardError::Communication(e.to_string()))?;
        let err = wait(dir.path(), 1, 2, ID.len(), Duration::from_millis(100));
        let Err(ShardError::Communication(msg)) = err else {
            panic!("a stale id was accepted: {err:?}")
        };
        assert!(msg.contains("stale file from process 4294967295"), "{msg}");
        // The live rank 0 replaces it, and the id is then accepted.
        publish(dir.path(), 2, &ID)?;
        assert_eq!(
            wait(dir.path(), 1, 2, ID.len(), Duration::from_secs(5))?,
            ID
        );
        Ok(())
    }

    #[test]
    fn a_recycled_pid_does_not_revive_a_stale_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ShardError::Communication(e.to_string()))?;
        let pid = std::process::id();
        let Some(start) = start_time(pid) else {
            panic!("no start time in /proc/self/stat")
        };
        let file = encode(2, pid, start + 1, &ID)?;
        std::fs::write(id_path(dir.path()), file)
            .map_err(|e| ShardError::Communication(e.to_string()))?;
        assert!(wait(dir.path(), 1, 2, ID.len(), Duration::from_millis(50)).is_err());
        Ok(())
    }

    #[test]
    fn garbage_is_ignored_and_a_world_mismatch_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ShardError::Communication(e.to_string()))?;
        std::fs::write(id_path(dir.path()), b"not an id")
            .map_err(|e| ShardError::Communication(e.to_string()))?;
        let err = wait(dir.path(), 1, 2, ID.len(), Duration::from_millis(50));
        assert!(
            matches!(&err, Err(ShardError::Communication(m)) if m.contains("unreadable file")),
            "{err:?}"
        );
        publish(dir.path(), 4, &ID)?;
        let err = wait(dir.path(), 1, 2, ID.len(), Duration::from_secs(5));
        assert!(
            matches!(&err, Err(ShardError::Communication(m)) if m.contains("for 4 ranks")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn encodes_and_decodes_round_trip() -> Result<()> {
        let b = encode(8, 1234, 99, &ID)?;
        let Some(f) = decode(&b) else {
            panic!("did not decode")
        };
        assert_eq!((f.world, f.pid, f.start, f.id), (8, 1234, 99, &ID[..]));
        assert!(decode(&b[..b.len() - 1]).is_none());
        Ok(())
    }

    #[test]
    fn reads_its_own_start_time() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
        assert!(publisher_alive(std::process::id(), 0));
        assert!(!publisher_alive(u32::MAX, 0));
    }
}
