//! The client side: one read transfer with options and windows, sans-IO.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::error::ClientError;
use super::netascii;
use super::wire::{
    self, DEFAULT_BLKSIZE, ErrorCode, MAX_BLKSIZE, MIN_BLKSIZE, Mode, Options, Packet, Request,
};

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The transfer mode. Default octet.
    pub mode: Mode,
    /// The block size asked for (RFC 2348), if any.
    pub blksize: Option<u16>,
    /// The window asked for (RFC 7440), if any.
    pub windowsize: Option<u16>,
    /// Whether to ask for the size (RFC 2349).
    pub tsize: bool,
    /// The timeout asked of the server, in seconds (RFC 2349), if any.
    pub timeout_secs: Option<u8>,
    /// The client's own retransmission timeout. Default 500 ms.
    #[serde(skip)]
    pub retransmit: Duration,
    /// Sends of the request or an ACK before giving up. Default 6.
    pub max_tries: u32,
    /// The receive buffer the socket adapter ([`fetch`](super::service::fetch)) asks for, in
    /// bytes: room for the window asked for. Default 8 MiB (beyond the system's cap when the
    /// process may, else up to it).
    pub recv_buffer: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Octet,
            blksize: None,
            windowsize: None,
            tsize: false,
            timeout_secs: None,
            retransmit: Duration::from_millis(500),
            max_tries: 6,
            recv_buffer: 8 << 20,
        }
    }
}

impl ClientConfig {
    /// Sets the block size asked for.
    pub fn blksize(&mut self, v: u16) -> &mut Self {
        self.blksize = Some(v.clamp(MIN_BLKSIZE, MAX_BLKSIZE));
        self
    }

    /// Sets the window asked for.
    pub fn windowsize(&mut self, v: u16) -> &mut Self {
        self.windowsize = Some(v.max(1));
        self
    }

    /// Asks for the size.
    pub fn tsize(&mut self, v: bool) -> &mut Self {
        self.tsize = v;
        self
    }

    /// Sets the mode.
    pub fn mode(&mut self, v: Mode) -> &mut Self {
        self.mode = v;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Requesting,
    Receiving,
    Done,
}

/// One read transfer, client side.
///
/// Sans-IO. Call order: [`Client::poll_transmit`] (the request first, to the server's
/// well-known port; later ACKs to [`Client::peer`]); feed each datagram received with
/// [`Client::handle_datagram`] (with its source) and call [`Client::handle_timeout`] at
/// [`Client::poll_timeout`]; take the file's bytes as they come with [`Client::take_data`];
/// [`Client::result`] is `Some` once the transfer is over.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    request: Vec<u8>,
    server: SocketAddr,
    peer: Option<SocketAddr>,
    state: State,
    blksize: u16,
    window: u16,
    tsize: Option<u64>,
    /// The next block expected (1-based, not wrapped).
    next: u64,
    in_window: u16,
    gap_acked_for: Option<u64>,
    pending: std::collections::VecDeque<(SocketAddr, Vec<u8>)>,
    data: Vec<u8>,
    received: u64,
    decoder: Option<netascii::Decoder>,
    tries: u32,
    final_block: Option<u16>,
    dallied: u32,
    deadline: Option<Instant>,
    result: Option<Result<(), ClientError>>,
}

impl Client {
    /// Starts reading `filename` from `server` (its well-known port).
    pub fn new(now: Instant, server: SocketAddr, filename: &str, config: ClientConfig) -> Self {
        let mut options = Options::new();
        if let Some(b) = config.blksize {
            options.set("blksize", b);
        }
        if config.tsize {
            options.set("tsize", 0);
        }
        if let Some(t) = config.timeout_secs {
            options.set("timeout", t);
        }
        if let Some(w) = config.windowsize {
            options.set("windowsize", w);
        }
        let request = Packet::Rrq(Request {
            filename: filename.to_string(),
            mode: config.mode,
            options,
        })
        .to_vec();
        let decoder = (config.mode == Mode::Netascii).then(netascii::Decoder::new);
        Self {
            pending: std::collections::VecDeque::from([(server, request.clone())]),
            request,
            server,
            peer: None,
            state: State::Requesting,
            blksize: DEFAULT_BLKSIZE,
            window: 1,
            tsize: None,
            next: 1,
            in_window: 0,
            gap_acked_for: None,
            data: Vec::new(),
            received: 0,
            decoder,
            tries: 1,
            final_block: None,
            dallied: 0,
            deadline: Some(now + config.retransmit),
            result: None,
            config,
        }
    }

    /// The server's transfer ID, once it answered.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Where the next datagram goes.
    pub fn destination(&self) -> SocketAddr {
        self.peer.unwrap_or(self.server)
    }

    /// The size the server announced (tsize), if any.
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    /// The block size in use.
    pub fn blksize(&self) -> u16 {
        self.blksize
    }

    /// The window in use.
    pub fn windowsize(&self) -> u16 {
        self.window
    }

    /// File bytes received so far (before netascii conversion).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// `Some` once over: `Ok` when the whole file arrived.
    pub fn result(&self) -> Option<&Result<(), ClientError>> {
        self.result.as_ref()
    }

    /// Whether the transfer is over and nothing is left to send.
    pub fn is_finished(&self) -> bool {
        self.result.is_some() && self.pending.is_empty()
    }

    /// The file's bytes received since the last call, in order.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// How many of the file's bytes are held, received since the last
    /// [`Client::drain_data`], [`Client::take_data`] or [`Client::replace_data`].
    pub fn buffered(&self) -> usize {
        self.data.len()
    }

    /// Returns the file's bytes received since the last call (in order) and keeps `spare`
    /// (emptied) for the next ones: a caller that stores whole buffers hands them over
    /// without copying, and gives back one it has finished with, so a long file cycles
    /// through a few allocations.
    pub fn replace_data(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        std::mem::replace(&mut self.data, spare)
    }

    /// Hands the file's bytes received since the last call (in order) to `sink`, keeping the
    /// buffer for the next ones: a long file streams through one allocation.
    pub fn drain_data<E>(&mut self, sink: impl FnOnce(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.data.is_empty() {
            return Ok(());
        }
        let r = sink(&self.data);
        self.data.clear();
        r
    }

    /// Handles a datagram from `from`. Packets from another port than the server's transfer ID
    /// get an ERROR 5 (RFC 1350) and change nothing.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.state == State::Done {
            // Dally (RFC 1350): the last ACK may have been lost; answer a resent last block
            // again, a bounded number of times.
            if let (Some(last), Some(peer), Ok(Packet::Data { block, .. })) =
                (self.final_block, self.peer, Packet::decode(datagram))
                && peer == from
                && block == last
                && self.dallied < 3
            {
                self.dallied += 1;
                let mut v = Vec::with_capacity(4);
                wire::encode_ack(last, &mut v);
                self.push(v);
            }
            return;
        }
        match self.peer {
            Some(p) if p != from => {
                let mut v = Vec::new();
                wire::encode_error(ErrorCode::UnknownTransferId, "Unknown transfer ID", &mut v);
                self.pending.push_back((from, v));
                return;
            }
            Some(_) => {}
            None => {
                if from.ip() != self.server.ip() {
                    return;
                }
            }
        }
        let Ok(packet) = Packet::decode(datagram) else {
            return;
        };
        match packet {
            Packet::Oack(options) if self.state == State::Requesting => {
                self.peer = Some(from);
                if let Err(e) = self.accept_oack(&options) {
                    self.fail_with_error(ErrorCode::OptionRefused, e);
                    return;
                }
                self.state = State::Receiving;
                self.send_ack(now, 0);
            }
            Packet::Data { block, data } => {
                if self.state == State::Requesting {
                    if block != 1 {
                        return;
                    }
                    self.peer = Some(from);
                    self.state = State::Receiving;
                }
                self.on_data(now, block, data);
            }
            Packet::Error { code, message } => {
                if self.state == State::Requesting {
                    self.peer = Some(from);
                }
                self.state = State::Done;
                self.deadline = None;
                self.result = Some(Err(ClientError::Server { code, message }));
            }
            _ => {}
        }
    }

    fn accept_oack(&mut self, options: &Options) -> Result<(), ClientError> {
        for (name, value) in options.iter() {
            let bad = || ClientError::Protocol(format!("OACK {name}={value:?} is invalid"));
            match name {
                "blksize" => {
                    let v: u16 = value.parse().map_err(|_| bad())?;
                    let asked = self.config.blksize.ok_or_else(bad)?;
                    if !(MIN_BLKSIZE..=asked).contains(&v) {
                        return Err(bad());
                    }
                    self.blksize = v;
                }
                "windowsize" => {
                    let v: u16 = value.parse().map_err(|_| bad())?;
                    let asked = self.config.windowsize.ok_or_else(bad)?;
                    if v == 0 || v > asked {
                        return Err(bad());
                    }
                    self.window = v;
                }
                "tsize" => {
                    if !self.config.tsize {
                        return Err(bad());
                    }
                    self.tsize = Some(value.parse().map_err(|_| bad())?);
                }
                "timeout" => {
                    if self.config.timeout_secs.is_none() {
                        return Err(bad());
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(())
    }

    fn on_data(&mut self, now: Instant, wire_block: u16, data: &[u8]) {
        if wire_block != self.next as u16 {
            // A gap (or a resend of what we have): acknowledge what we hold, once per gap, so
            // the server resends from there without waiting for its timeout.
            let behind = (self.next as u16).wrapping_sub(wire_block);
            if behind > 0 && behind <= self.window.max(1) {
                // An old block: our ACK was lost; re-ACK once.
                if self.gap_acked_for != Some(self.next) {
                    self.gap_acked_for = Some(self.next);
                    self.send_ack(now, self.next - 1);
                }
            } else if self.gap_acked_for != Some(self.next) {
                self.gap_acked_for = Some(self.next);
                self.send_ack(now, self.next - 1);
            }
            return;
        }
        if data.len() > usize::from(self.blksize) {
            self.fail_with_error(
                ErrorCode::IllegalOperation,
                ClientError::Protocol(format!(
                    "block {wire_block} carries {} bytes, more than the block size {}",
                    data.len(),
                    self.blksize
                )),
            );
            return;
        }
        self.received += data.len() as u64;
        match &mut self.decoder {
            Some(d) => d.decode(data, &mut self.data),
            None => self.data.extend_from_slice(data),
        }
        let block = self.next;
        self.next += 1;
        self.in_window += 1;
        self.tries = 1;
        if data.len() < usize::from(self.blksize) {
            if let Some(d) = &mut self.decoder {
                d.finish(&mut self.data);
            }
            self.send_ack(now, block);
            self.final_block = Some(block as u16);
            self.state = State::Done;
            self.deadline = None;
            self.result = Some(match self.tsize {
                Some(t) if self.config.mode == Mode::Octet && t != self.received => {
                    Err(ClientError::Protocol(format!(
                        "received {} bytes, tsize said {t}",
                        self.received
                    )))
                }
                _ => Ok(()),
            });
            return;
        }
        if self.in_window >= self.window {
            self.send_ack(now, block);
        } else {
            self.deadline = Some(now + self.config.retransmit);
        }
    }

    fn send_ack(&mut self, now: Instant, block: u64) {
        let mut v = Vec::with_capacity(4);
        wire::encode_ack(block as u16, &mut v);
        self.push(v);
        self.in_window = 0;
        self.deadline = Some(now + self.config.retransmit);
    }

    fn fail_with_error(&mut self, code: ErrorCode, error: ClientError) {
        let mut v = Vec::new();
        wire::encode_error(code, &error.to_string(), &mut v);
        self.push(v);
        self.state = State::Done;
        self.deadline = None;
        self.result = Some(Err(error));
    }

    fn push(&mut self, bytes: Vec<u8>) {
        let to = self.destination();
        self.pending.push_back((to, bytes));
    }

    /// Aborts the transfer, telling the server with an ERROR (as edk2 does with code 8 once
    /// it has learnt the size).
    pub fn abort(&mut self, code: ErrorCode, message: &str) {
        if self.state == State::Done {
            return;
        }
        let mut v = Vec::new();
        wire::encode_error(code, message, &mut v);
        self.push(v);
        self.state = State::Done;
        self.deadline = None;
        self.result = Some(Err(ClientError::Protocol(format!("aborted: {message}"))));
    }

    /// Handles the passing of time: the request or the last ACK is sent again, up to
    /// [`ClientConfig::max_tries`] sends.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.tries >= self.config.max_tries {
            self.state = State::Done;
            self.deadline = None;
            self.result = Some(Err(ClientError::Timeout { tries: self.tries }));
            return;
        }
        self.tries += 1;
        match self.state {
            State::Requesting => self.push(self.request.clone()),
            State::Receiving => {
                // RFC 7440: on a timeout, acknowledge the last block received in order.
                let mut v = Vec::with_capacity(4);
                wire::encode_ack((self.next - 1) as u16, &mut v);
                self.in_window = 0;
                self.push(v);
            }
            State::Done => {}
        }
        self.deadline = Some(now + self.config.retransmit);
    }

    /// When [`Client::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The next datagram to send and where to, or `None`.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.pending.pop_front()
    }
}
