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
const HELLO_LEN: usize = 16;
/// Linux's `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Pause between polls while peers are missing.
const POLL: Duration = Duration::from_millis(2);

/// The socket rank `rank` listens on during rendezvous.
pub(super) fn socket_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank-{rank}.sock"))
}

/// The mesh of one rank: `streams[p]` is the connection to rank `p` (`None` at our rank), and
/// `chunk` the round size every rank agreed on (the smallest any rank proposed).
pub(super) struct Connected {
    pub streams: Vec<Option<UnixStream>>,
    pub chunk: usize,
}

/// Connects `rank` to every other rank of `world`, proposing `chunk` as the round size.
/// Fails after `timeout` naming the ranks never seen.
pub(super) fn connect_mesh(
    rank: usize,
    world: usize,
    dir: &Path,
    timeout: Duration,
    chunk: usize,
) -> Result<Connected> {
    if world == 0 || rank >= world {
        return Err(ShardError::Communication(format!(
            "rank {rank} is out of range for world size {world}"
        )));
    }
    let mut streams: Vec<Option<UnixStream>> = (0..world).map(|_| None).collect();
    let mut hs = Handshake {
        rank,
        world,
        dir,
        chunk,
        agreed: chunk,
    };
    if world == 1 {
        return Ok(Connected { streams, chunk });
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
    let result = hs.all(listener.as_ref(), timeout, &mut streams);
    if listener.is_some() {
        // Every higher rank is connected (or we give up): nobody needs the name any more.
        let _ = std::fs::remove_file(&own);
    }
    result.map(|()| Connected {
        streams,
        chunk: hs.agreed,
    })
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

/// What a rank tells its peers when they connect, and the round size agreed so far.
struct Handshake<'a> {
    rank: usize,
    world: usize,
    dir: &'a Path,
    /// Our proposed round size.
    chunk: usize,
    /// The smallest round size seen; equal on every rank once the mesh is complete, since
    /// every rank hears from every other.
    agreed: usize,
}

impl Handshake<'_> {
    fn all(
        &mut self,
        listener: Option<&UnixListener>,
        timeout: Duration,
        streams: &mut [Option<UnixStream>],
    ) -> Result<()> {
        let (rank, world) = (self.rank, self.world);
        let deadline = Instant::now() + timeout;
        loop {
            let mut progressed = false;
            for (peer, slot) in streams.iter_mut().enumerate().take(rank) {
                if slot.is_none() {
                    *slot = self.try_connect(peer, deadline)?;
                    progressed |= slot.is_some();
                }
            }
            if let Some(listener) = listener {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (peer, stream) = self.accept_one(s, deadline)?;
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
                    self.dir.display()
                )));
            }
            if !progressed {
                std::thread::sleep(POLL);
            }
        }
    }

    /// One attempt to reach lower rank `peer`; `None` while it is not listening yet.
    fn try_connect(&mut self, peer: usize, deadline: Instant) -> Result<Option<UnixStream>> {
        let (rank, world) = (self.rank, self.world);
        let path = socket_path(self.dir, peer);
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
            .write_all(&self.hello())
            .map_err(|e| fail("greeting", e))?;
        let mut reply = [0u8; HELLO_LEN];
        stream
            .read_exact(&mut reply)
            .map_err(|e| fail("waiting for the handshake of", e))?;
        let their = self.parse(&reply)?;
        if their.world != world || their.rank != peer {
            return Err(ShardError::Communication(format!(
                "rank {rank}: {} answered as rank {} of {}, expected rank {peer} of {world}",
                path.display(),
                their.rank,
                their.world
            )));
        }
        Ok(Some(stream))
    }

    /// Reads the greeting of a higher rank that connected to us, answers it, and returns the
    /// peer's rank with the finished connection.
    fn accept_one(&mut self, stream: UnixStream, deadline: Instant) -> Result<(usize, UnixStream)> {
        let (rank, world) = (self.rank, self.world);
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
        let their = self.parse(&buf)?;
        if their.world != world || their.rank <= rank || their.rank >= world {
            return Err(ShardError::Communication(format!(
                "rank {rank} of {world}: a peer connected as rank {} of {}",
                their.rank, their.world
            )));
        }
        (&stream).write_all(&self.hello()).map_err(io)?;
        Ok((their.rank, stream))
    }

    fn hello(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(self.world as u32).to_le_bytes());
        b[8..12].copy_from_slice(&(self.rank as u32).to_le_bytes());
        b[12..16].copy_from_slice(&(self.chunk as u32).to_le_bytes());
        b
    }

    /// Checks a peer's greeting and takes its round size into the agreement.
    fn parse(&mut self, b: &[u8; HELLO_LEN]) -> Result<Hello> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        if word(0) != HELLO_MAGIC as usize {
            return Err(ShardError::Communication(format!(
                "rank {}: a process that is not a tgi-rs shard connected to the rendezvous \
                 socket",
                self.rank
            )));
        }
        let chunk = word(12);
        if chunk == 0 || chunk % 64 != 0 {
            return Err(ShardError::Communication(format!(
                "rank {}: a peer proposed round size {chunk} (not a positive multiple of 64)",
                self.rank
            )));
        }
        self.agreed = self.agreed.min(chunk);
        Ok(Hello {
            world: word(4),
            rank: word(8),
        })
    }
}

/// A peer's greeting.
struct Hello {
    world: usize,
    rank: usize,
}

fn remaining(deadline: Instant) -> Duration {
    // A zero timeout means "block forever" to the socket API: keep it positive.
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
