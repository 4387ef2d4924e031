//! The server's settings and the negotiation of a request's options (RFC 2347-2349, 7440),
//! shared by read transfers and uploads.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::server::Refusal;
use super::wire::{
    DATA_HEADER, DEFAULT_BLKSIZE, ErrorCode, MAX_BLKSIZE, MIN_BLKSIZE, Options, Request,
};

/// How the server negotiates and retransmits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The largest block size granted (RFC 2348), 8..=65464. Default 65464.
    pub max_blksize: u16,
    /// The path MTU to the clients, if known: the block size is capped so a DATA packet fits
    /// in one IP datagram (IPv4 or IPv6 headers accounted for). Default: none.
    pub mtu: Option<u16>,
    /// The largest window granted (RFC 7440), 1..=32768. Default 4096.
    pub max_window: u16,
    /// Sends of one packet or window before giving up (first send included). Default 6.
    pub max_tries: u32,
    /// The first retransmission timeout, before any round trip is measured. Default 1 s.
    #[serde(with = "millis")]
    pub initial_timeout: Duration,
    /// The floor of the adaptive timeout. Default 50 ms.
    #[serde(with = "millis")]
    pub min_timeout: Duration,
    /// The ceiling of the adaptive timeout (and of its back-off). Default 4 s.
    #[serde(with = "millis")]
    pub max_timeout: Duration,
    /// The largest file served in netascii mode (converted in memory). Default 16 MiB.
    pub max_netascii_size: u64,
    /// A cap on the window granted, as the receive buffer a whole window must fit in at the
    /// client, in kernel allocation sizes (a datagram of `n` bytes takes the next power of two
    /// above `n` plus its bookkeeping). Default 0: no cap beyond
    /// [`ServerConfig::max_window`]; a client that cannot take its window is found out by its
    /// losses instead (see [`ServerConfig::loss_budget`]), and clients that keep up are not
    /// slowed down for it.
    pub window_budget: u32,
    /// What a transfer whose client lost blocks (its ACK shows a gap, or it stopped answering
    /// within a window) sends at most before hearing from it, in the same kernel sizes as
    /// [`ServerConfig::window_budget`]: such a client's receive buffer is most likely smaller
    /// than the window it asked for (Linux's default is 208 KiB). The window granted cannot
    /// change after the OACK, so each such burst ends with an empty DATA packet for the block
    /// the client last acknowledged, which it answers at once with an ACK of what it holds.
    /// Default 160 KiB.
    pub loss_budget: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_blksize: MAX_BLKSIZE,
            mtu: None,
            max_window: 4096,
            max_tries: 6,
            initial_timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(50),
            max_timeout: Duration::from_secs(4),
            max_netascii_size: 16 << 20,
            window_budget: 0,
            loss_budget: 160 << 10,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::max_blksize`] (clamped to 8..=65464).
    pub fn max_blksize(&mut self, v: u16) -> &mut Self {
        self.max_blksize = v.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
        self
    }

    /// Sets [`ServerConfig::max_window`] (clamped to 1..=32768).
    pub fn max_window(&mut self, v: u16) -> &mut Self {
        self.max_window = v.clamp(1, MAX_WINDOW);
        self
    }

    /// Sets [`ServerConfig::mtu`].
    pub fn mtu(&mut self, v: Option<u16>) -> &mut Self {
        self.mtu = v;
        self
    }

    /// Sets [`ServerConfig::max_tries`] (at least 1).
    pub fn max_tries(&mut self, v: u32) -> &mut Self {
        self.max_tries = v.max(1);
        self
    }

    /// Sets [`ServerConfig::initial_timeout`].
    pub fn initial_timeout(&mut self, v: Duration) -> &mut Self {
        self.initial_timeout = v;
        self
    }

    /// The largest window for `blksize` within [`ServerConfig::window_budget`] (at least 1).
    pub(crate) fn window_cap(&self, blksize: u16) -> u16 {
        blocks_within(self.window_budget, blksize)
    }

    /// The burst for `blksize` within [`ServerConfig::loss_budget`] (at least 1).
    pub(crate) fn loss_burst(&self, blksize: u16) -> u16 {
        blocks_within(self.loss_budget, blksize)
    }

    pub(crate) fn blksize_cap(&self, client: SocketAddr) -> u16 {
        let headers = if client.is_ipv4() { 20 + 8 } else { 40 + 8 };
        let mtu_cap = self.mtu.map_or(MAX_BLKSIZE, |m| {
            m.saturating_sub(headers + DATA_HEADER as u16)
        });
        self.max_blksize
            .min(mtu_cap)
            .clamp(MIN_BLKSIZE, MAX_BLKSIZE)
    }
}

/// How many DATA packets of `blksize` fit in `budget` bytes of a receive buffer, in kernel
/// allocation sizes (at least 1; `budget` 0: no limit).
fn blocks_within(budget: u32, blksize: u16) -> u16 {
    if budget == 0 {
        return MAX_WINDOW;
    }
    let per_packet = (u32::from(blksize) + 512).next_power_of_two() + 512;
    u16::try_from(budget / per_packet)
        .unwrap_or(MAX_WINDOW)
        .clamp(1, MAX_WINDOW)
}

/// The largest window ever granted: block numbers in flight must stay unambiguous modulo 2^16.
pub const MAX_WINDOW: u16 = 32768;

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What option negotiation granted (RFC 2347-2349, 7440).
pub(crate) struct Negotiated {
    /// The OACK to send; empty when no option was granted.
    pub(crate) oack: Options,
    pub(crate) blksize: u16,
    pub(crate) window: u16,
    /// The client's fixed timeout, when it asked for one.
    pub(crate) timeout: Option<Duration>,
}

/// Negotiates `request`'s options for `client`: blksize (capped by the server and the path),
/// timeout, windowsize (capped, then fitted to the block size) and tsize, whose value in the
/// OACK `tsize` decides (`Err(None)`: an invalid value, refused with error 8; `Err(Some(r))`:
/// refused with `r`). Unknown options are left out of the OACK.
pub(crate) fn negotiate(
    request: &Request,
    client: SocketAddr,
    config: &ServerConfig,
    tsize: impl FnOnce(&str) -> Result<u64, Option<Refusal>>,
) -> Result<Negotiated, Refusal> {
    let mut oack = Options::new();
    let mut blksize = DEFAULT_BLKSIZE;
    let mut window = 1u16;
    let mut timeout = None;
    let mut tsize = Some(tsize);
    for (name, value) in request.options.iter() {
        let refuse = || {
            Refusal::new(
                ErrorCode::OptionRefused,
                format!("Invalid value for option {name}"),
            )
        };
        match name {
            "blksize" => {
                let v: u64 = value.parse().map_err(|_| refuse())?;
                if v < u64::from(MIN_BLKSIZE) {
                    return Err(refuse());
                }
                blksize = u16::try_from(v.min(u64::from(MAX_BLKSIZE)))
                    .unwrap_or(MAX_BLKSIZE)
                    .min(config.blksize_cap(client));
                oack.set("blksize", blksize);
            }
            "tsize" => {
                if let Some(decide) = tsize.take() {
                    let size = decide(value).map_err(|r| r.unwrap_or_else(refuse))?;
                    oack.set("tsize", size);
                }
            }
            "timeout" => {
                let v: u8 = value.parse().map_err(|_| refuse())?;
                if v == 0 {
                    return Err(refuse());
                }
                timeout = Some(Duration::from_secs(v.into()));
                oack.set("timeout", v);
            }
            "windowsize" => {
                let v: u16 = value.parse().map_err(|_| refuse())?;
                if v == 0 {
                    return Err(refuse());
                }
                window = v.min(config.max_window.clamp(1, MAX_WINDOW));
            }
            _ => {}
        }
    }
    if request.options.get("windowsize").is_some() {
        // Decided once the block size is known (options may come in any order).
        window = window.min(config.window_cap(blksize));
        oack.set("windowsize", window);
    }
    Ok(Negotiated {
        oack,
        blksize,
        window,
        timeout,
    })
}
