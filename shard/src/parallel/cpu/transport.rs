//! The mesh of Unix sockets between ranks and its one primitive, [`Mesh::exchange`]: every
//! rank sends a header and a payload to every other rank, in lockstep rounds of at most
//! `chunk` bytes.
//!
//! Why rounds: a rank writes round `k` only after it has read round `k - 1` from every peer, so
//! at most two chunks (plus a header) are ever unread on one socket. With the chunk at a
//! quarter of the socket send buffer, writes never block on a full buffer, and all ranks
//! writing before reading cannot deadlock, whatever the payload size.

use super::wire::{Header, HEADER_LEN};
use crate::error::{Result, ShardError};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Round size when the socket buffer size cannot be read.
const DEFAULT_CHUNK: usize = 32 * 1024;

/// Checks a peer's header against ours; the error says what differs.
pub(super) type HeaderCheck<'a> = &'a dyn Fn(&Header, &Header) -> std::result::Result<(), String>;

/// One rank's connections and reusable buffers.
pub(super) struct Mesh {
    rank: usize,
    world: usize,
    /// Connection to every other rank (`None` at `rank`); writes go through `get_ref()`.
    peers: Vec<Option<BufReader<UnixStream>>>,
    io_timeout: Duration,
    chunk: usize,
    /// Counter of collectives, checked against the peers' to catch ranks out of step.
    seq: u64,
    /// Set by the first failure: the byte streams are then out of step for good.
    failure: Option<String>,
    /// Our header followed by our payload.
    pub send: Vec<u8>,
    /// One round's bytes from each peer.
    recv: Vec<Vec<u8>>,
    headers: Vec<Header>,
}

impl Mesh {
    /// Wraps the rendezvous' streams; rounds carry at most `chunk` bytes (the same on every
    /// rank) and `io_timeout` bounds every read and write.
    pub fn new(
        rank: usize,
        streams: Vec<Option<UnixStream>>,
        chunk: usize,
        io_timeout: Duration,
    ) -> Result<Self> {
        let world = streams.len();
        let peers = streams
            .into_iter()
            .map(|s| s.map(|s| BufReader::with_capacity(HEADER_LEN + chunk, s)))
            .collect();
        let mut mesh = Mesh {
            rank,
            world,
            peers,
            io_timeout,
            chunk,
            seq: 0,
            failure: None,
            send: Vec::with_capacity(HEADER_LEN + chunk),
            recv: (0..world).map(|_| vec![0u8; chunk]).collect(),
            headers: Vec::with_capacity(world),
        };
        mesh.set_io_timeout(io_timeout)?;
        Ok(mesh)
    }

    /// Bounds every later read and write by `timeout`.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> Result<()> {
        for (p, peer) in self.peers.iter().enumerate() {
            if let Some(peer) = peer {
                let s = peer.get_ref();
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .map_err(|source| ShardError::Io {
                        context: format!(
                            "rank {}: setting the timeout towards rank {p}",
                            self.rank
                        ),
                        source,
                    })?;
            }
        }
        self.io_timeout = timeout;
        Ok(())
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Round size in bytes.
    #[cfg(test)]
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Starts a collective: fails at once after an earlier failure, otherwise returns its
    /// sequence number and clears the send buffer.
    pub fn begin(&mut self) -> Result<u64> {
        if let Some(why) = &self.failure {
            return Err(ShardError::Communication(format!(
                "rank {}: the communicator is unusable after an earlier failure: {why}",
                self.rank
            )));
        }
        self.seq += 1;
        self.send.clear();
        Ok(self.seq)
    }

    /// Records the first failure and shuts every connection down, so that peers blocked on
    /// us see EOF at once instead of waiting for their timeout.
    pub fn fail(&mut self, error: &ShardError) {
        if self.failure.is_none() {
            self.failure = Some(error.to_string());
        }
        for peer in self.peers.iter().flatten() {
            let _ = peer.get_ref().shutdown(Shutdown::Both);
        }
    }

    /// Sends `send` (`mine` encoded, then the payload) to every peer and receives every peer's
    /// header and payload. `on_round(headers, offset, chunks)` sees, for each rank in rank
    /// order, bytes `offset..offset + chunks[r].len()` of that rank's payload (our own
    /// included).
    pub fn exchange(
        &mut self,
        mine: &Header,
        check: HeaderCheck<'_>,
        mut on_round: impl FnMut(&[Header], usize, &[&[u8]]) -> Result<()>,
    ) -> Result<()> {
        let Mesh {
            rank,
            world,
            peers,
            io_timeout,
            chunk,
            send,
            recv,
            headers,
            ..
        } = self;
        let (rank, world, chunk) = (*rank, *world, *chunk);
        let peer_err = |peer: usize, e: std::io::Error| io_error(rank, peer, mine, *io_timeout, e);
        headers.clear();
        headers.resize(world, *mine);
        let own_len = send.len() - HEADER_LEN;
        let part = |len: usize, offset: usize| len.saturating_sub(offset).min(chunk);

        // Round 0 carries the headers.
        let first = HEADER_LEN + part(own_len, 0);
        for (p, peer) in peers.iter().enumerate() {
            if let Some(peer) = peer {
                peer.get_ref()
                    .write_all(&send[..first])
                    .map_err(|e| peer_err(p, e))?;
            }
        }
        let mut raw = [0u8; HEADER_LEN];
        for (p, peer) in peers.iter_mut().enumerate() {
            let Some(peer) = peer else { continue };
            peer.read_exact(&mut raw).map_err(|e| peer_err(p, e))?;
            let theirs = Header::decode(&raw)
                .map_err(|why| mismatch(rank, p, mine, &format!("unreadable header: {why}")))?;
            if theirs.op != mine.op || theirs.seq != mine.seq {
                let why = format!(
                    "rank {p} is in {} #{} while this rank is in {} #{}",
                    theirs.op, theirs.seq, mine.op, mine.seq
                );
                return Err(mismatch(rank, p, mine, &why));
            }
            check(mine, &theirs).map_err(|why| mismatch(rank, p, mine, &why))?;
            headers[p] = theirs;
            let n = part(theirs.len as usize, 0);
            peer.read_exact(&mut recv[p][..n])
                .map_err(|e| peer_err(p, e))?;
        }
        let longest = headers.iter().map(|h| h.len as usize).max().unwrap_or(0);
        let rounds = longest.div_ceil(chunk).max(1);

        for round in 0..rounds {
            let offset = round * chunk;
            if round > 0 {
                let n = part(own_len, offset);
                let bytes = &send[HEADER_LEN + offset..HEADER_LEN + offset + n];
                for (p, peer) in peers.iter().enumerate() {
                    if let (Some(peer), false) = (peer, bytes.is_empty()) {
                        peer.get_ref()
                            .write_all(bytes)
                            .map_err(|e| peer_err(p, e))?;
                    }
                }
                for (p, peer) in peers.iter_mut().enumerate() {
                    let Some(peer) = peer else { continue };
                    let n = part(headers[p].len as usize, offset);
                    peer.read_exact(&mut recv[p][..n])
                        .map_err(|e| peer_err(p, e))?;
                }
            }
            let chunks: Vec<&[u8]> = (0..world)
                .map(|r| {
                    if r == rank {
                        let n = part(own_len, offset);
                        &send[HEADER_LEN + offset..HEADER_LEN + offset + n]
                    } else {
                        &recv[r][..part(headers[r].len as usize, offset)]
                    }
                })
                .collect();
            on_round(headers, offset, &chunks)?;
        }
        Ok(())
    }
}

/// This machine's round size: half the socket send buffer holds two rounds with room for the
/// kernel's per-packet overhead; clamped to 4-64 KiB and a multiple of 64 so it splits into
/// whole elements. Ranks agree on the smallest proposal at rendezvous.
pub(super) fn chunk_size() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(|wmem| (wmem / 4).clamp(4096, 64 * 1024) & !63)
        .unwrap_or(DEFAULT_CHUNK)
}

fn io_error(
    rank: usize,
    peer: usize,
    at: &Header,
    timeout: Duration,
    source: std::io::Error,
) -> ShardError {
    let (op, seq) = (at.op, at.seq);
    match source.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted => ShardError::Communication(format!(
            "rank {rank}: rank {peer} closed its connection during {op} #{seq} (its process \
             exited or failed)"
        )),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ShardError::Communication(format!(
            "rank {rank}: no progress with rank {peer} for {timeout:?} during {op} #{seq} (it is \
             stuck, or not calling the same collectives)"
        )),
        _ => ShardError::Io {
            context: format!("rank {rank}: {op} #{seq} with rank {peer}"),
            source,
        },
    }
}

fn mismatch(rank: usize, peer: usize, at: &Header, why: &str) -> ShardError {
    ShardError::Communication(format!(
        "rank {rank}: {} #{}: ranks disagree with rank {peer}: {why}",
        at.op, at.seq
    ))
}
