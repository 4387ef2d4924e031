//! The server side: deciding on a request ([`respond`]) and running one read transfer
//! ([`Transfer`]), both sans-IO.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::negotiate::{Negotiated, ServerConfig, negotiate};
use super::netascii;
use super::provider::{Content, FileProvider};
use super::wire::{self, ErrorCode, Mode, Options, Packet, Request};

mod transmit;

/// An ERROR to send instead of starting a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// The message (short; no server paths).
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Appends the ERROR packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::encode_error(self.code, &self.message, out);
    }
}

/// What to do with a datagram that arrived on the server's well-known port.
#[derive(Debug)]
pub enum Response {
    /// Start this transfer (on a new transfer ID, RFC 1350).
    Start(Box<Transfer>),
    /// Answer with this ERROR only.
    Refuse(Refusal),
    /// Send nothing: not a request (an ACK or DATA sent to the wrong port, an ERROR): answering
    /// would let anyone bounce packets off the server.
    Ignore,
}

/// Decides on a datagram sent to the server's port by `client`: a read request is opened with
/// `provider` and negotiated; a write request (see [`Receive`](super::Receive) to accept
/// them), a malformed request or an unreadable file is refused with the right code.
pub fn respond(
    now: Instant,
    datagram: &[u8],
    client: SocketAddr,
    provider: &dyn FileProvider,
    config: &ServerConfig,
) -> Response {
    let request = match Packet::decode(datagram) {
        Ok(Packet::Rrq(r)) => r,
        Ok(Packet::Wrq(_)) => {
            return Response::Refuse(Refusal::new(
                ErrorCode::AccessViolation,
                "Write requests are not accepted",
            ));
        }
        Ok(_) => return Response::Ignore,
        Err(e) => {
            // A request whose opcode we cannot even read is not answered.
            if datagram.len() < 2 || !matches!(datagram[1], 1 | 2) || datagram[0] != 0 {
                return Response::Ignore;
            }
            return Response::Refuse(Refusal::new(ErrorCode::IllegalOperation, e.to_string()));
        }
    };
    let content = match provider.open(&request.filename, client) {
        Ok(c) => c,
        Err(e) => return Response::Refuse(Refusal::new(e.code(), e.client_message())),
    };
    match Transfer::new(now, &request, content, client, config) {
        Ok(t) => Response::Start(Box::new(t)),
        Err(r) => Response::Refuse(r),
    }
}

/// What a transfer did, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// File bytes acknowledged by the client.
    pub bytes: u64,
    /// DATA packets sent, first sends and retransmissions.
    pub packets: u64,
    /// DATA (and OACK) packets sent again.
    pub retransmitted: u64,
    /// The block size used.
    pub blksize: u16,
    /// The window used.
    pub windowsize: u16,
    /// The most blocks sent at once at the end: the window, or less once the client lost
    /// blocks (see [`ServerConfig::loss_budget`]).
    pub burst: u16,
    /// Retransmission timeouts: how often the peer went silent.
    pub timeouts: u32,
    /// From the request to the end.
    #[serde(serialize_with = "micros")]
    pub duration: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The last block was acknowledged.
    Completed(Summary),
    /// The client sent an ERROR (for example edk2's error 8 after learning `tsize`); nothing
    /// is answered.
    Aborted {
        /// The client's code.
        code: ErrorCode,
        /// The client's message.
        message: String,
        /// What was sent until then.
        summary: Summary,
    },
    /// The client stopped answering.
    TimedOut(Summary),
    /// The file could not be read; the client was sent an ERROR.
    Failed {
        /// Why.
        error: String,
        /// What was sent until then.
        summary: Summary,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// OACK sent, waiting for ACK(0).
    Negotiating,
    /// Sending data.
    Sending,
    /// Over (an event is or was pending; an ERROR may still be pending).
    Done,
}

/// A DATA packet described instead of written (see [`Transfer::poll_transmit_blocks`]): the
/// datagram is `header` followed by `len` bytes of the content from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataBlock {
    /// The packet's first four bytes: opcode 3 and the block number (low 16 bits).
    pub header: [u8; 4],
    /// Where the payload starts in the content.
    pub offset: u64,
    /// The payload's length (shorter than the block size only for the last block).
    pub len: usize,
}

/// One read transfer, server side: the file goes out in blocks of the negotiated size, a
/// window at a time, each window waiting for its acknowledgement.
///
/// Sans-IO. Call order, repeated until [`Transfer::is_finished`]:
/// 1. [`Transfer::poll_transmit`] until it returns `false`, sending each datagram to the client
///    from this transfer's own port;
/// 2. wait for a datagram from the client or until [`Transfer::poll_timeout`], then call
///    [`Transfer::handle_datagram`] or [`Transfer::handle_timeout`];
/// 3. [`Transfer::poll_event`] gives how it ended, once.
///
/// Until the client proves its address (ACK(0) after an OACK, ACK(1) without options), at
/// most one packet is in flight: no amplification of a forged request. A duplicate ACK never
/// doubles the traffic (no Sorcerer's Apprentice): with a window of 1 it is ignored, as
/// RFC 1350 requires; with larger windows it triggers at most one early resend of the window
/// after the acknowledged block, and only once the window has been out for half the
/// retransmission timeout.
///
/// A client that loses blocks of a window (its ACK shows a gap, or a window goes
/// unanswered) most likely has a receive buffer smaller than the window it asked for: from
/// then on that transfer sends bursts within [`ServerConfig::loss_budget`], each ended by
/// an empty DATA packet for the block the client last acknowledged. A
/// client takes that for a duplicate and acknowledges what it holds at once, so every
/// burst is answered without the client having to count a whole window or wait for its
/// timeout. Clients that keep up get their whole window.
#[derive(Debug)]
pub struct Transfer {
    content: Content,
    state: State,
    blksize: u16,
    window: u16,
    oack: Option<Options>,
    /// Blocks are numbered from 1 without wrapping; the wire carries the low 16 bits.
    last_block: u64,
    acked: u64,
    highest_sent: u64,
    send_from: u64,
    window_end: u64,
    /// The most blocks sent before waiting for an ACK: the window, until the client loses
    /// some.
    burst: u16,
    /// The burst after a first loss (from [`ServerConfig::loss_budget`]).
    loss_burst: u16,
    /// The current burst's probe for an ACK is still to be sent (see
    /// [`Transfer::probe_packet`]).
    probe: bool,
    /// After a timeout: the window's end and the burst before it, restored if the client
    /// turns out to have had the whole window (the timeout was its slowness, not a loss).
    undo: Option<(u64, u16)>,
    window_sent_at: Instant,
    window_clean: bool,
    dup_resent_for: Option<u64>,
    pending_control: Option<Vec<u8>>,
    tries: u32,
    /// Timeouts over the whole transfer.
    tries_total: u32,
    max_tries: u32,
    rto: Duration,
    fixed_timeout: bool,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_timeout: Duration,
    max_timeout: Duration,
    deadline: Option<Instant>,
    started: Instant,
    packets: u64,
    retransmitted: u64,
    event: Option<Event>,
}

impl Transfer {
    /// Negotiates `request`'s options for `content` (RFC 2347-2349, 7440) and prepares the
    /// first packet: an OACK when any option was granted, block 1 otherwise. An option with an
    /// invalid value is refused with error 8.
    pub fn new(
        now: Instant,
        request: &Request,
        content: Content,
        client: SocketAddr,
        config: &ServerConfig,
    ) -> Result<Self, Refusal> {
        let content = match request.mode {
            Mode::Octet => content,
            Mode::Netascii => {
                if content.len() > config.max_netascii_size {
                    return Err(Refusal::new(
                        ErrorCode::Undefined,
                        "File too large for netascii; use octet mode",
                    ));
                }
                let text = content
                    .read_all()
                    .map_err(|_| Refusal::new(ErrorCode::Undefined, "Read error"))?;
                Content::from(netascii::encode(&text))
            }
        };
        let Negotiated {
            oack,
            blksize,
            window,
            timeout,
        } = negotiate(request, client, config, |asked| {
            asked
                .parse::<u64>()
                .map(|_| content.len())
                .map_err(|_| None)
        })?;
        let last_block = content.len() / u64::from(blksize) + 1;
        let mut t = Self {
            content,
            state: State::Sending,
            blksize,
            window,
            oack: None,
            last_block,
            acked: 0,
            highest_sent: 0,
            send_from: 1,
            window_end: 1,
            burst: window,
            loss_burst: config.loss_burst(blksize).min(window),
            probe: false,
            undo: None,
            window_sent_at: now,
            window_clean: true,
            dup_resent_for: None,
            pending_control: None,
            tries: 1,
            tries_total: 0,
            max_tries: config.max_tries.max(1),
            rto: timeout.unwrap_or(config.initial_timeout),
            fixed_timeout: timeout.is_some(),
            srtt: None,
            rttvar: Duration::ZERO,
            min_timeout: config.min_timeout,
            max_timeout: config.max_timeout.max(config.min_timeout),
            deadline: None,
            started: now,
            packets: 0,
            retransmitted: 0,
            event: None,
        };
        if oack.is_empty() {
            // No options: block 1 alone until the client acknowledges it.
            t.window_end = 1;
        } else {
            let mut bytes = Vec::new();
            Packet::Oack(oack.clone()).encode(&mut bytes);
            t.pending_control = Some(bytes);
            t.oack = Some(oack);
            t.state = State::Negotiating;
            t.send_from = 1;
            t.window_end = 0;
        }
        t.deadline = Some(now + t.rto);
        Ok(t)
    }

    /// The negotiated block size.
    pub fn blksize(&self) -> u16 {
        self.blksize
    }

    /// The negotiated window.
    pub fn windowsize(&self) -> u16 {
        self.window
    }

    /// The options granted, if an OACK was sent.
    pub fn granted(&self) -> Option<&Options> {
        self.oack.as_ref()
    }

    /// The size of what is sent (after netascii conversion).
    pub fn size(&self) -> u64 {
        self.content.len()
    }

    /// Whether the transfer is over and has nothing left to send.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done && self.pending_control.is_none()
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// Handles a datagram from the client's transfer ID (the caller checks the address).
    /// Malformed or unexpected packets are ignored: they cannot end or speed up a transfer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Done {
            return;
        }
        match Packet::decode(datagram) {
            Ok(Packet::Ack { block }) => self.on_ack(now, block),
            Ok(Packet::Error { code, message }) => {
                self.state = State::Done;
                self.deadline = None;
                self.event = Some(Event::Aborted {
                    code,
                    message,
                    summary: self.summary(now),
                });
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, now: Instant, wire_block: u16) {
        if self.state == State::Negotiating {
            if wire_block == 0 {
                self.state = State::Sending;
                self.sample_rtt(now);
                self.start_window(now, 1);
            }
            return;
        }
        // Map the 16-bit number into [acked, highest_sent].
        let ahead = u64::from(wire_block.wrapping_sub(self.acked as u16));
        let block = self.acked + ahead;
        if block > self.highest_sent {
            return; // not sent yet, or older than the last acknowledgement: ignored
        }
        if block == self.acked {
            self.on_duplicate_ack(now);
            return;
        }
        if block == self.window_end && self.window_clean {
            self.sample_rtt(now);
        }
        self.acked = block;
        self.tries = 1;
        self.dup_resent_for = None;
        if block >= self.last_block {
            self.state = State::Done;
            self.deadline = None;
            self.event = Some(Event::Completed(self.summary(now)));
            return;
        }
        if let Some((end, burst)) = self.undo.take()
            && block >= end
        {
            self.burst = burst;
        }
        if block >= self.window_end {
            self.start_window(now, block + 1);
        } else if block + 1 < self.send_from {
            // The client reports a gap inside the window: it lost what followed `block`.
            // Send again from the first block it lacks, in bursts it can take.
            self.on_loss();
            self.start_window(now, block + 1);
        }
    }

    fn on_duplicate_ack(&mut self, now: Instant) {
        if self.window == 1 || self.dup_resent_for == Some(self.acked) {
            return;
        }
        // A duplicate that follows the window closely is an echo of packets still in flight
        // (a client re-acknowledging reordered or resent blocks), not a loss: acting on it
        // would resend the window again and again.
        if now.saturating_duration_since(self.window_sent_at) < self.rto / 2 {
            return;
        }
        self.dup_resent_for = Some(self.acked);
        self.start_window(now, self.acked + 1);
    }

    /// Narrows the bursts after a loss to the loss budget. Losses within it are taken for
    /// what they are on a real link (a dropped datagram, a late ACK) and recovered as usual:
    /// a window that the loss budget would fit is never cut, so a lossy link does not make a
    /// transfer crawl.
    fn on_loss(&mut self) {
        self.burst = self.burst.min(self.loss_burst);
    }

    fn start_window(&mut self, now: Instant, from: u64) {
        self.send_from = from;
        let n = self.burst.min(self.window);
        self.window_end = (from + u64::from(n) - 1).min(self.last_block);
        // A burst shorter than the window ends with its last block again, which the client
        // answers at once: it would otherwise wait for the rest of its window.
        self.probe = n < self.window && self.window_end < self.last_block;
        self.window_sent_at = now;
        self.window_clean = from > self.highest_sent;
        if !self.fixed_timeout {
            self.rto = self.adaptive_rto();
        }
        self.deadline = Some(now + self.rto);
    }

    fn adaptive_rto(&self) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt + (self.rttvar * 4).max(Duration::from_millis(10)))
                .clamp(self.min_timeout, self.max_timeout),
            None => self.rto,
        }
    }

    fn sample_rtt(&mut self, now: Instant) {
        if self.fixed_timeout {
            return;
        }
        let r = now.saturating_duration_since(self.window_sent_at);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    /// Handles the passing of time: at [`Transfer::poll_timeout`], the OACK or the window
    /// after the last acknowledged block is sent again (with the timeout doubled), or the
    /// transfer gives up after [`ServerConfig::max_tries`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline || self.state == State::Done {
            return;
        }
        if self.tries >= self.max_tries {
            self.state = State::Done;
            self.deadline = None;
            self.event = Some(Event::TimedOut(self.summary(now)));
            return;
        }
        self.tries += 1;
        self.tries_total += 1;
        if !self.fixed_timeout {
            self.rto = (self.rto * 2).min(self.max_timeout);
        }
        match self.state {
            State::Negotiating => {
                if let Some(oack) = &self.oack {
                    let mut bytes = Vec::new();
                    Packet::Oack(oack.clone()).encode(&mut bytes);
                    self.pending_control = Some(bytes);
                    self.retransmitted += 1;
                }
                self.window_sent_at = now;
                self.deadline = Some(now + self.rto);
            }
            State::Sending => {
                let rto = self.rto;
                if self.undo.is_none() {
                    self.undo = Some((self.window_end, self.burst));
                }
                self.on_loss();
                self.start_window(now, self.acked + 1);
                self.window_clean = false;
                self.rto = rto;
                self.deadline = Some(now + rto);
            }
            State::Done => {}
        }
    }

    /// When [`Transfer::handle_timeout`] should be called next, `None` once over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The content being served (after any netascii conversion).
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// Ends the transfer because its content cannot be sent (a read failed, or the file
    /// shrank under it): the client gets an ERROR (code 0, `message`) and the transfer ends
    /// with [`Event::Failed`] carrying `error`. For senders of [`Transfer::poll_transmit_blocks`]
    /// that find the content unreadable.
    pub fn fail(&mut self, now: Instant, message: &str, error: String) {
        if self.state == State::Done {
            return;
        }
        let mut bytes = Vec::new();
        wire::encode_error(ErrorCode::Undefined, message, &mut bytes);
        self.pending_control = Some(bytes);
        self.state = State::Done;
        self.deadline = None;
        self.event = Some(Event::Failed {
            error,
            summary: self.summary(now),
        });
    }

    /// How the transfer ended, once.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    fn summary(&self, now: Instant) -> Summary {
        let bytes = if self.acked >= self.last_block {
            self.content.len()
        } else {
            self.acked * u64::from(self.blksize)
        };
        Summary {
            bytes,
            packets: self.packets,
            retransmitted: self.retransmitted,
            blksize: self.blksize,
            windowsize: self.window,
            burst: self.burst.min(self.window),
            timeouts: self.tries_total,
            duration: now.saturating_duration_since(self.started),
        }
    }
}

/// The ERROR message and the failure for content that ended at `at`, before its length.
pub(crate) fn shrank(at: u64) -> (&'static str, String) {
    (
        "File changed during transfer",
        format!("the file ended at byte {at}, before the length it had when opened"),
    )
}
