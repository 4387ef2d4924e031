//! Write requests (RFC 1350 WRQ), when enabled: [`Receive`] runs one upload sans-IO, and
//! [`UploadDir`] stores it under a directory, in a temporary file renamed into place once
//! complete.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::ProviderError;
use super::negotiate::{Negotiated, ServerConfig, negotiate};
use super::netascii;
use super::provider::{UPLOAD_MARK, safe_components};
use super::server::{Event, Refusal, Summary};
use super::wire::{self, ErrorCode, Mode, Packet, Request};

/// What write requests may do. Writes are refused unless a service is given one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteConfig {
    /// The directory uploads are stored in (nothing outside it, whatever the name).
    pub dir: PathBuf,
    /// Whether an upload may replace an existing file. Default no (error 6).
    pub overwrite: bool,
    /// The largest upload accepted, in bytes (error 3 beyond it). Default 64 MiB.
    pub max_size: u64,
}

impl Default for WriteConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            overwrite: false,
            max_size: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving DATA.
    Receiving,
    /// The last block is acknowledged; its ACK is sent again if the DATA comes again.
    Dallying,
    /// Over.
    Done,
}

/// One write transfer, server side: DATA in, ACKs out, the bytes handed over in order.
///
/// Sans-IO, like [`Transfer`](super::Transfer): send what [`Receive::poll_transmit`] gives,
/// feed datagrams from the client to [`Receive::handle_datagram`] and the passing of time to
/// [`Receive::handle_timeout`], write what [`Receive::take_data`] returns, and on
/// [`Event::Completed`] make the file visible before sending the final ACK. With a window
/// (RFC 7440) a block out of order is answered with one ACK of the last block in order,
/// not one per packet.
#[derive(Debug)]
pub struct Receive {
    state: State,
    blksize: u16,
    window: u16,
    /// The next block expected, numbered from 1 without wrapping.
    next: u64,
    in_window: u16,
    gap_acked: bool,
    decoder: Option<netascii::Decoder>,
    data: Vec<u8>,
    received: u64,
    max_size: u64,
    pending: Option<Vec<u8>>,
    last_sent: Vec<u8>,
    tries: u32,
    /// Timeouts over the whole upload.
    timeouts: u32,
    max_tries: u32,
    rto: Duration,
    max_timeout: Duration,
    fixed_timeout: bool,
    deadline: Option<Instant>,
    started: Instant,
    packets: u64,
    retransmitted: u64,
    event: Option<Event>,
}

impl Receive {
    /// Negotiates a write request's options (blksize, timeout, windowsize; a `tsize` above
    /// `max_size` is refused with error 3) and prepares the first answer: an OACK, or ACK(0)
    /// without options.
    pub fn new(
        now: Instant,
        request: &Request,
        client: SocketAddr,
        config: &ServerConfig,
        max_size: u64,
    ) -> Result<Self, Refusal> {
        let Negotiated {
            oack,
            blksize,
            window,
            timeout,
        } = negotiate(request, client, config, |asked| {
            let size: u64 = asked.parse().map_err(|_| None)?;
            if size > max_size {
                return Err(Some(Refusal::new(ErrorCode::DiskFull, "File too large")));
            }
            Ok(size)
        })?;
        let mut first = Vec::new();
        if oack.is_empty() {
            wire::encode_ack(0, &mut first);
        } else {
            Packet::Oack(oack).encode(&mut first);
        }
        let rto = timeout.unwrap_or(config.initial_timeout);
        Ok(Self {
            state: State::Receiving,
            blksize,
            window,
            next: 1,
            in_window: 0,
            gap_acked: false,
            decoder: (request.mode == Mode::Netascii).then(netascii::Decoder::new),
            data: Vec::new(),
            received: 0,
            max_size,
            pending: Some(first.clone()),
            last_sent: first,
            tries: 1,
            timeouts: 0,
            max_tries: config.max_tries.max(1),
            rto,
            max_timeout: config.max_timeout.max(rto),
            fixed_timeout: timeout.is_some(),
            deadline: Some(now + rto),
            started: now,
            packets: 0,
            retransmitted: 0,
            event: None,
        })
    }

    /// The negotiated block size.
    pub fn blksize(&self) -> u16 {
        self.blksize
    }

    /// The negotiated window.
    pub fn windowsize(&self) -> u16 {
        self.window
    }

    /// File bytes received so far (before netascii conversion).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Handles a datagram from the client's transfer ID. Malformed or unexpected packets are
    /// ignored.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(packet) = Packet::decode(datagram) else {
            return;
        };
        match (self.state, packet) {
            (State::Done, _) => {}
            (State::Dallying, Packet::Data { block, .. }) => {
                if block == (self.next - 1) as u16 {
                    self.pending = Some(self.last_sent.clone());
                    self.retransmitted += 1;
                }
            }
            (State::Dallying, _) => {}
            (State::Receiving, Packet::Data { block, data }) => self.on_data(now, block, data),
            (State::Receiving, Packet::Error { code, message }) => {
                self.finish(Event::Aborted {
                    code,
                    message,
                    summary: self.summary(now),
                });
            }
            (State::Receiving, _) => {}
        }
    }

    fn on_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        if data.len() > usize::from(self.blksize) {
            return;
        }
        if block != self.next as u16 {
            // A duplicate or a block after a gap: acknowledge the last block in order, once
            // until the next block in order arrives (never one ACK per stray packet).
            if !self.gap_acked {
                self.gap_acked = true;
                self.in_window = 0;
                self.send_ack(now, self.next - 1);
            }
            return;
        }
        if self.received + data.len() as u64 > self.max_size {
            self.abort(now, ErrorCode::DiskFull, "File too large");
            return;
        }
        match &mut self.decoder {
            Some(d) => d.decode(data, &mut self.data),
            None => self.data.extend_from_slice(data),
        }
        self.received += data.len() as u64;
        self.packets += 1;
        self.gap_acked = false;
        self.tries = 1;
        let this = self.next;
        self.next += 1;
        self.in_window += 1;
        if data.len() < usize::from(self.blksize) {
            if let Some(d) = &mut self.decoder {
                d.finish(&mut self.data);
            }
            self.send_ack(now, this);
            self.state = State::Dallying;
            // Long enough for the client to notice a lost final ACK and send the block again.
            self.deadline = Some(now + self.rto * 2);
            self.event = Some(Event::Completed(self.summary(now)));
            return;
        }
        if self.in_window >= self.window {
            self.in_window = 0;
            self.send_ack(now, this);
        } else {
            self.deadline = Some(now + self.rto);
        }
    }

    fn send_ack(&mut self, now: Instant, block: u64) {
        let mut ack = Vec::with_capacity(4);
        wire::encode_ack(block as u16, &mut ack);
        self.pending = Some(ack.clone());
        self.last_sent = ack;
        self.deadline = Some(now + self.rto);
    }

    /// Ends the upload with an ERROR to the client (for example when the file cannot be
    /// written or stored); the event becomes [`Event::Failed`].
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        let mut err = Vec::new();
        wire::encode_error(code, message, &mut err);
        self.pending = Some(err);
        let summary = self.summary(now);
        self.finish(Event::Failed {
            error: message.to_string(),
            summary,
        });
    }

    fn finish(&mut self, event: Event) {
        self.state = State::Done;
        self.deadline = None;
        self.event = Some(event);
    }

    /// Handles the passing of time: the last ACK (or OACK) is sent again with the timeout
    /// doubled, or the upload gives up after [`ServerConfig::max_tries`]. After the final ACK
    /// the upload simply ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.state {
            State::Dallying => {
                self.state = State::Done;
                self.deadline = None;
            }
            State::Receiving if self.tries >= self.max_tries => {
                let summary = self.summary(now);
                self.finish(Event::TimedOut(summary));
            }
            State::Receiving => {
                self.tries += 1;
                self.timeouts += 1;
                if !self.fixed_timeout {
                    self.rto = (self.rto * 2).min(self.max_timeout);
                }
                self.pending = Some(self.last_sent.clone());
                self.retransmitted += 1;
                self.in_window = 0;
                self.gap_acked = false;
                self.deadline = Some(now + self.rto);
            }
            State::Done => {}
        }
    }

    /// When [`Receive::handle_timeout`] should be called next, `None` once over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Writes the next datagram to send into `buf` (replacing its content) and returns `true`,
    /// or `false` when there is nothing to send.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.pending.take() {
            Some(bytes) => {
                buf.clear();
                buf.extend_from_slice(&bytes);
                true
            }
            None => false,
        }
    }

    /// The file bytes received in order since the last call (netascii already converted).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// How the upload ended, once.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    /// Whether the upload is over and has nothing left to send.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done && self.pending.is_none()
    }

    fn summary(&self, now: Instant) -> Summary {
        Summary {
            bytes: self.received,
            packets: self.packets,
            retransmitted: self.retransmitted,
            blksize: self.blksize,
            windowsize: self.window,
            burst: self.window,
            timeouts: self.timeouts,
            duration: now.saturating_duration_since(self.started),
        }
    }
}

/// A directory uploads are stored in, which no name can leave.
///
/// The name is checked with [`safe_components`]; its directory must already exist and lie,
/// after every symbolic link, under the root. The upload is written to a hidden temporary
/// file beside its destination and renamed into place only when complete: a half-written
/// upload is never visible under its name, and an abandoned one is removed.
#[derive(Debug, Clone)]
pub struct UploadDir {
    root: PathBuf,
    overwrite: bool,
}

impl UploadDir {
    /// Stores uploads under `root` (which must exist); `overwrite` lets an upload replace an
    /// existing regular file.
    pub fn new(root: impl AsRef<Path>, overwrite: bool) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(Self { root, overwrite })
    }

    /// Opens the temporary file of an upload to `path`.
    pub fn create(&self, path: &str) -> Result<PendingFile, ProviderError> {
        let refuse = |reason| ProviderError::Refused {
            path: path.to_string(),
            reason,
        };
        let io = |source: std::io::Error| ProviderError::Io {
            path: path.to_string(),
            source,
        };
        let components = safe_components(path)?;
        let Some((name, dirs)) = components.split_last() else {
            return Err(refuse("no file name"));
        };
        let mut parent = self.root.clone();
        parent.extend(dirs);
        let parent = std::fs::canonicalize(&parent).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ProviderError::NotFound(path.to_string())
            } else {
                io(e)
            }
        })?;
        if !parent.starts_with(&self.root) || !parent.is_dir() {
            return Err(refuse("the directory lies outside the root"));
        }
        let dest = parent.join(name);
        match std::fs::symlink_metadata(&dest) {
            Ok(meta) if !meta.file_type().is_file() => {
                return Err(refuse("not a regular file"));
            }
            Ok(_) if !self.overwrite => return Err(ProviderError::Exists(path.to_string())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".{name}{UPLOAD_MARK}{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io)?;
        Ok(PendingFile {
            file,
            tmp,
            dest,
            overwrite: self.overwrite,
            committed: false,
        })
    }
}

/// An upload being written: a temporary file, removed unless [`PendingFile::commit`]ted.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl PendingFile {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Makes the upload visible under its name: flushed to disk, then renamed into place
    /// (or, without overwrite, linked, which fails if a file of that name appeared since).
    pub fn commit(mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        if self.overwrite {
            std::fs::rename(&self.tmp, &self.dest)?;
        } else {
            std::fs::hard_link(&self.tmp, &self.dest)?;
            let _ = std::fs::remove_file(&self.tmp);
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
