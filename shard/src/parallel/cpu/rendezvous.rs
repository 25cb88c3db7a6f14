//! Rendezvous of the CPU communicator: every rank listens on `<dir>/rank-<r>.sock`, connects
//! to every lower rank and accepts every higher one, giving a full mesh of Unix sockets.
//!
//! Waits only ever go from a higher rank to a lower one (a connector waits for the lower
//! rank's handshake reply), so the handshakes cannot deadlock whatever order the processes
//! start in.

use crate::error::{Result, ShardError};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Opens a handshake ("TGIH"), distinct from collective headers.
const HELLO_MAGIC: u32 = 0x5447_4948;
const HELLO_LEN: usize = 12;
/// Linux's `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Pause between polls while peers are missing.
const POLL: Duration = Duration::from_millis(2);

/// The socket rank `rank` listens on during rendezvous.
pub(super) fn socket_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank-{rank}.sock"))
}

/// Connects `rank` to every other rank of `world`; `streams[p]` is the connection to rank `p`
/// (`None` at `rank`). Fails after `timeout` naming the ranks never seen.
pub(super) fn connect_mesh(
    rank: usize,
    world: usize,
    dir: &Path,
    timeout: Duration,
) -> Result<Vec<Option<UnixStream>>> {
    if world == 0 || rank >= world {
        return Err(ShardError::Communication(format!(
            "rank {rank} is out of range for world size {world}"
        )));
    }
    let mut streams: Vec<Option<UnixStream>> = (0..world).map(|_| None).collect();
    if world == 1 {
        return Ok(streams);
    }
    std::fs::create_dir_all(dir).map_err(|source| ShardError::Io {
        context: format!("creating the rendezvous directory {}", dir.display()),
        source,
    })?;
    let own = socket_path(dir, rank);
    let longest = socket_path(dir, world - 1);
    if longest.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ShardError::Communication(format!(
            "rendezvous socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter \
             --uds-path",
            longest.display()
        )));
    }
    let listener = if rank + 1 < world {
        Some(bind(&own)?)
    } else {
        // The highest rank is never connected to; it only tidies a name an earlier run left.
        let _ = std::fs::remove_file(&own);
        None
    };
    let result = handshake_all(rank, world, dir, listener.as_ref(), timeout, &mut streams);
    if listener.is_some() {
        // Every higher rank is connected (or we give up): nobody needs the name any more.
        let _ = std::fs::remove_file(&own);
    }
    result.map(|()| streams)
}

fn bind(path: &Path) -> Result<UnixListener> {
    let io = |context: String| move |source| ShardError::Io { context, source };
    // A file left by an earlier run of this rank would make bind fail with AddrInUse.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(io(format!("removing the stale socket {}", path.display()))(
                e,
            ))
        }
        _ => {}
    }
    let listener =
        UnixListener::bind(path).map_err(io(format!("listening on {}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(io(format!("configuring {}", path.display())))?;
    Ok(listener)
}

fn handshake_all(
    rank: usize,
    world: usize,
    dir: &Path,
    listener: Option<&UnixListener>,
    timeout: Duration,
    streams: &mut [Option<UnixStream>],
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut progressed = false;
        for (peer, slot) in streams.iter_mut().enumerate().take(rank) {
            if slot.is_none() {
                *slot = try_connect(rank, world, dir, peer, deadline)?;
                progressed |= slot.is_some();
            }
        }
        if let Some(listener) = listener {
            match listener.accept() {
                Ok((s, _)) => {
                    let (peer, stream) = accept_one(rank, world, s, deadline)?;
                    if streams[peer].is_some() {
                        return Err(ShardError::Communication(format!(
                            "rank {rank}: two processes claim rank {peer}"
                        )));
                    }
                    streams[peer] = Some(stream);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(source) => {
                    return Err(ShardError::Io {
                        context: format!("rank {rank}: accepting a peer connection"),
                        source,
                    })
                }
            }
        }
        let missing: Vec<usize> = (0..world)
            .filter(|&p| p != rank && streams[p].is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ShardError::Communication(format!(
                "rank {rank} of {world}: rendezvous in {} timed out after {timeout:?}; no \
                 connection with rank(s) {missing:?} (did those shard processes start?)",
                dir.display()
            )));
        }
        if !progressed {
            std::thread::sleep(POLL);
        }
    }
}

/// One attempt to reach lower rank `peer`; `None` while it is not listening yet.
fn try_connect(
    rank: usize,
    world: usize,
    dir: &Path,
    peer: usize,
    deadline: Instant,
) -> Result<Option<UnixStream>> {
    let path = socket_path(dir, peer);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        // Not bound yet, or a stale file from an earlier run: retry until the deadline.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(source) => {
            return Err(ShardError::Io {
                context: format!("rank {rank}: connecting to {}", path.display()),
                source,
            })
        }
    };
    let fail = |what: &str, source| ShardError::Io {
        context: format!("rank {rank}: {what} rank {peer} at {}", path.display()),
        source,
    };
    stream
        .set_read_timeout(Some(remaining(deadline)))
        .map_err(|e| fail("configuring the connection to", e))?;
    stream
        .write_all(&hello(world, rank))
        .map_err(|e| fail("greeting", e))?;
    let mut reply = [0u8; HELLO_LEN];
    stream
        .read_exact(&mut reply)
        .map_err(|e| fail("waiting for the handshake of", e))?;
    let (their_world, their_rank) = parse_hello(&reply, rank)?;
    if their_world != world || their_rank != peer {
        return Err(ShardError::Communication(format!(
            "rank {rank}: {} answered as rank {their_rank} of {their_world}, expected rank \
             {peer} of {world}",
            path.display()
        )));
    }
    Ok(Some(stream))
}

/// Reads the greeting of a higher rank that connected to us, answers it, and returns the
/// peer's rank with the finished connection.
fn accept_one(
    rank: usize,
    world: usize,
    stream: UnixStream,
    deadline: Instant,
) -> Result<(usize, UnixStream)> {
    let io = |source| ShardError::Io {
        context: format!("rank {rank}: handshake with a connecting peer"),
        source,
    };
    stream.set_nonblocking(false).map_err(io)?;
    stream
        .set_read_timeout(Some(remaining(deadline)))
        .map_err(io)?;
    let mut buf = [0u8; HELLO_LEN];
    (&stream).read_exact(&mut buf).map_err(io)?;
    let (their_world, their_rank) = parse_hello(&buf, rank)?;
    if their_world != world || their_rank <= rank || their_rank >= world {
        return Err(ShardError::Communication(format!(
            "rank {rank} of {world}: a peer connected as rank {their_rank} of {their_world}"
        )));
    }
    (&stream).write_all(&hello(world, rank)).map_err(io)?;
    Ok((their_rank, stream))
}

fn hello(world: usize, rank: usize) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&(world as u32).to_le_bytes());
    b[8..12].copy_from_slice(&(rank as u32).to_le_bytes());
    b
}

fn parse_hello(b: &[u8; HELLO_LEN], rank: usize) -> Result<(usize, usize)> {
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    if word(0) != HELLO_MAGIC as usize {
        return Err(ShardError::Communication(format!(
            "rank {rank}: a process that is not a tgi-rs shard connected to the rendezvous socket"
        )));
    }
    Ok((word(4), word(8)))
}

fn remaining(deadline: Instant) -> Duration {
    // A zero timeout means "block forever" to the socket API: keep it positive.
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
