//! Active scanning: ARP probes over an IPv4 subnet, duplicate-address solicitations for a list
//! of IPv6 addresses, paced at a bounded rate, and who answered.
//!
//! [`Scan`] does no I/O. Call order: [`Scan::poll_transmit`] gives the next frame to send
//! when its time has come; [`Scan::handle_frame`] takes every decoded frame received;
//! [`Scan::poll_timeout`] says when to call `poll_transmit` again; [`Scan::is_done`] holds once
//! every probe has been sent (each address `attempts` times, skipping those that answered)
//! and the timeout after the last one has passed. Probes need no address of the scanner's
//! own: ARP probes come from `0.0.0.0` (RFC 5227) and solicitations from `::`, and owners
//! answer both.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use maas_net::Mac;
use serde::{Deserialize, Serialize};

use crate::wire::{Arp, ArpOp, Frame, Ndp, NdpKind, Payload};

/// The most addresses one scan probes (an IPv4 /12).
pub const MAX_TARGETS: usize = 1 << 20;

/// Why a scan cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The rate is zero.
    #[error("the scan rate must be at least 1 probe per second")]
    ZeroRate,
    /// More addresses than [`MAX_TARGETS`].
    #[error("{0} has more than {MAX_TARGETS} addresses; scan a smaller subnet")]
    TooLarge(String),
    /// Nothing to scan.
    #[error("no address to scan")]
    Empty,
    /// A multicast, broadcast or unspecified address.
    #[error("{0} cannot be scanned: not a unicast address")]
    NotUnicast(IpAddr),
    /// The scanner's MAC is not a unicast address.
    #[error("the source MAC {0} is not a unicast address")]
    SourceMac(Mac),
}

/// How a scan probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// The scanner's MAC (the frames' source and the probes' sender).
    pub source_mac: Mac,
    /// The VLAN to probe on (0: untagged).
    #[serde(default)]
    pub vid: u16,
    /// Probes per second (default 200).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// How many times an address that has not answered is probed (default 2).
    #[serde(default = "default_attempts")]
    pub attempts: u8,
    /// How long to wait for answers after the last probe, in milliseconds (default 1000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_rate() -> u32 {
    200
}
fn default_attempts() -> u8 {
    2
}
fn default_timeout() -> u64 {
    1000
}

impl ScanConfig {
    /// The defaults, from `source_mac`.
    pub fn new(source_mac: Mac) -> Self {
        Self {
            source_mac,
            vid: 0,
            rate: default_rate(),
            attempts: default_attempts(),
            timeout_ms: default_timeout(),
        }
    }

    /// Sets the VLAN id.
    pub fn vid(&mut self, vid: u16) -> &mut Self {
        self.vid = vid;
        self
    }

    /// Sets the rate in probes per second.
    pub fn rate(&mut self, pps: u32) -> &mut Self {
        self.rate = pps;
        self
    }

    /// Sets the number of attempts per address (at least 1).
    pub fn attempts(&mut self, n: u8) -> &mut Self {
        self.attempts = n.max(1);
        self
    }

    /// Sets the wait after the last probe.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// An address that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The address probed.
    pub ip: IpAddr,
    /// The MAC that answered first.
    pub mac: Mac,
    /// Other MACs that answered for the same address (a conflict).
    pub other_macs: Vec<Mac>,
    /// The VLAN id.
    pub vid: u16,
    /// From the first probe to the first answer, in microseconds.
    pub rtt_us: u64,
}

/// An active scan in progress (sans-IO; see the module docs for the call order).
#[derive(Debug)]
pub struct Scan {
    config: ScanConfig,
    targets: Vec<IpAddr>,
    first_sent: HashMap<IpAddr, Option<Instant>>,
    interval: Duration,
    timeout: Duration,
    next: usize,
    attempt: u8,
    next_send: Option<Instant>,
    last_send: Option<Instant>,
    answers: BTreeMap<IpAddr, Answer>,
    sent: u64,
}

impl Scan {
    /// A scan of the addresses of `net`: every host address of an IPv4 subnet (not the
    /// network or broadcast address, except in a /31 or /32), every address of an IPv6 one.
    pub fn subnet(config: ScanConfig, net: IpNet) -> Result<Self, ScanError> {
        let size = 1u128 << (net.max_prefix_len() - net.prefix_len()).min(127);
        if size > MAX_TARGETS as u128 {
            return Err(ScanError::TooLarge(net.to_string()));
        }
        let targets: Vec<IpAddr> = net
            .hosts()
            .filter(|ip| match ip {
                IpAddr::V6(v6) => !v6.is_unspecified(),
                IpAddr::V4(_) => true,
            })
            .collect();
        Self::new(config, targets)
    }

    /// A scan of a list of addresses (IPv4 by ARP, IPv6 by neighbour solicitation).
    /// Duplicates are probed once.
    pub fn new(
        config: ScanConfig,
        targets: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Self, ScanError> {
        if config.rate == 0 {
            return Err(ScanError::ZeroRate);
        }
        if !config.source_mac.is_unicast() || config.source_mac == Mac::ZERO {
            return Err(ScanError::SourceMac(config.source_mac));
        }
        let mut first_sent = HashMap::new();
        let mut list = Vec::new();
        for ip in targets {
            let unicast = match ip {
                IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
                IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
            };
            if !unicast {
                return Err(ScanError::NotUnicast(ip));
            }
            if first_sent.insert(ip, None).is_none() {
                list.push(ip);
            }
            if list.len() > MAX_TARGETS {
                return Err(ScanError::TooLarge(format!(
                    "the list of {} addresses",
                    list.len()
                )));
            }
        }
        if list.is_empty() {
            return Err(ScanError::Empty);
        }
        Ok(Self {
            interval: Duration::from_secs(1) / config.rate,
            timeout: Duration::from_millis(config.timeout_ms),
            attempt: 0,
            config,
            targets: list,
            first_sent,
            next: 0,
            next_send: None,
            last_send: None,
            answers: BTreeMap::new(),
            sent: 0,
        })
    }

    /// The next probe frame, if one is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_send.is_some_and(|t| now < t) {
            return None;
        }
        let ip = self.next_target()?;
        let frame = match ip {
            IpAddr::V4(v4) => Arp::probe(self.config.source_mac, v4).emit_frame(self.config.vid),
            IpAddr::V6(v6) => Ndp::dad_frame(self.config.source_mac, v6, self.config.vid),
        };
        if let Some(first) = self.first_sent.get_mut(&ip) {
            first.get_or_insert(now);
        }
        // Paced from the schedule, not from when the caller came back, so the rate holds on
        // average; a caller late by more than an interval does not get a burst.
        self.next_send = Some(match self.next_send {
            Some(t) if now.saturating_duration_since(t) < self.interval => t + self.interval,
            _ => now + self.interval,
        });
        self.last_send = Some(now);
        self.sent += 1;
        Some(frame)
    }

    /// When to call [`Scan::poll_transmit`] (or [`Scan::is_done`]) next. `None` before the
    /// first probe (call `poll_transmit` at once) and when done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.has_more() {
            return self.next_send;
        }
        self.last_send.map(|t| t + self.timeout)
    }

    /// Records an answer, if `frame` is one: an ARP reply (or announcement) from a probed
    /// IPv4 address, or a neighbour advertisement for a probed IPv6 address, on the scanned
    /// VLAN. Returns whether it was.
    pub fn handle_frame(&mut self, now: Instant, frame: &Frame) -> bool {
        if frame.vid != self.config.vid {
            return false;
        }
        let (ip, mac) = match &frame.payload {
            Payload::Arp(arp)
                if arp.operation == ArpOp::Reply
                    || (arp.is_gratuitous() && arp.operation == ArpOp::Request) =>
            {
                (IpAddr::V4(arp.sender_ip), arp.sender_mac)
            }
            Payload::Ndp(ndp) if matches!(ndp.kind, NdpKind::Advertisement { .. }) => (
                IpAddr::V6(ndp.target),
                ndp.link_layer.unwrap_or(frame.source),
            ),
            _ => return false,
        };
        let Some(Some(sent)) = self.first_sent.get(&ip) else {
            return false;
        };
        let rtt = now.saturating_duration_since(*sent);
        match self.answers.get_mut(&ip) {
            Some(answer) => {
                if answer.mac != mac && !answer.other_macs.contains(&mac) {
                    answer.other_macs.push(mac);
                }
            }
            None => {
                self.answers.insert(
                    ip,
                    Answer {
                        ip,
                        mac,
                        other_macs: Vec::new(),
                        vid: frame.vid,
                        rtt_us: u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
                    },
                );
            }
        }
        true
    }

    /// Whether every probe is sent and the wait after the last one is over.
    pub fn is_done(&self, now: Instant) -> bool {
        !self.has_more() && self.last_send.is_none_or(|t| now >= t + self.timeout)
    }

    /// The addresses that answered, in address order.
    pub fn answers(&self) -> impl Iterator<Item = &Answer> {
        self.answers.values()
    }

    /// The addresses probed that have not answered (yet).
    pub fn unanswered(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.targets
            .iter()
            .copied()
            .filter(|ip| !self.answers.contains_key(ip))
    }

    /// How many probes were sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// How many addresses the scan covers.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the scan covers no address (never true: [`Scan::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn has_more(&self) -> bool {
        let mut next = self.next;
        let mut attempt = self.attempt;
        loop {
            if attempt >= self.config.attempts {
                return false;
            }
            match self.targets.get(next) {
                Some(ip) if attempt > 0 && self.answers.contains_key(ip) => next += 1,
                Some(_) => return true,
                None => {
                    next = 0;
                    attempt += 1;
                }
            }
        }
    }

    fn next_target(&mut self) -> Option<IpAddr> {
        loop {
            if self.attempt >= self.config.attempts {
                return None;
            }
            match self.targets.get(self.next).copied() {
                Some(ip) => {
                    self.next += 1;
                    if self.attempt > 0 && self.answers.contains_key(&ip) {
                        continue;
                    }
                    return Some(ip);
                }
                None => {
                    self.next = 0;
                    self.attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::parse_frame;

    const ME: Mac = Mac::new([2, 0, 0, 0, 0, 1]);

    fn reply(mac: Mac, ip: Ipv4Addr) -> Frame {
        Frame {
            source: mac,
            destination: ME,
            vid: 0,
            payload: Payload::Arp(Arp {
                operation: ArpOp::Reply,
                sender_mac: mac,
                sender_ip: ip,
                target_mac: ME,
                target_ip: Ipv4Addr::UNSPECIFIED,
            }),
        }
    }

    #[test]
    fn paces_probes_retries_the_silent_and_finishes() {
        let mut config = ScanConfig::new(ME);
        config.rate(10).attempts(2).timeout(Duration::from_secs(1));
        let mut scan = Scan::subnet(config, "10.77.131.0/30".parse().unwrap()).unwrap();
        assert_eq!(scan.len(), 2);
        let t0 = Instant::now();
        let f = scan.poll_transmit(t0).unwrap();
        let Payload::Arp(arp) = parse_frame(&f).unwrap().unwrap().payload else {
            panic!()
        };
        assert!(arp.is_probe());
        assert_eq!(arp.target_ip, Ipv4Addr::new(10, 77, 131, 1));
        assert!(scan.poll_transmit(t0).is_none(), "rate bound");
        assert_eq!(scan.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        assert!(scan.poll_transmit(t1).is_some());
        assert!(scan.handle_frame(
            t1,
            &reply(Mac::new([2, 0, 0, 0, 0, 7]), Ipv4Addr::new(10, 77, 131, 1))
        ));
        // Second round: only .2, which did not answer.
        let t2 = t0 + Duration::from_millis(200);
        let f = scan.poll_transmit(t2).unwrap();
        let Payload::Arp(arp) = parse_frame(&f).unwrap().unwrap().payload else {
            panic!()
        };
        assert_eq!(arp.target_ip, Ipv4Addr::new(10, 77, 131, 2));
        assert!(scan.poll_transmit(t2 + Duration::from_secs(1)).is_none());
        assert!(!scan.is_done(t2 + Duration::from_millis(500)));
        assert!(scan.is_done(t2 + Duration::from_secs(1)));
        let answers: Vec<&Answer> = scan.answers().collect();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].rtt_us, 100_000);
        assert_eq!(
            scan.unanswered().collect::<Vec<_>>(),
            [IpAddr::V4(Ipv4Addr::new(10, 77, 131, 2))]
        );
        assert_eq!(scan.sent(), 3);
    }

    #[test]
    fn unprobed_and_foreign_answers_are_ignored() {
        let mut scan =
            Scan::subnet(ScanConfig::new(ME), "10.77.131.0/24".parse().unwrap()).unwrap();
        let now = Instant::now();
        // Not probed yet.
        assert!(!scan.handle_frame(
            now,
            &reply(Mac::new([2, 0, 0, 0, 0, 7]), Ipv4Addr::new(10, 77, 131, 1))
        ));
        scan.poll_transmit(now).unwrap();
        assert!(!scan.handle_frame(
            now,
            &reply(Mac::new([2, 0, 0, 0, 0, 7]), Ipv4Addr::new(10, 77, 132, 1))
        ));
        assert_eq!(scan.answers().count(), 0);
    }

    #[test]
    fn refuses_bad_scans() {
        let mut zero = ScanConfig::new(ME);
        zero.rate(0);
        assert_eq!(
            Scan::subnet(zero, "10.77.131.0/24".parse().unwrap()).unwrap_err(),
            ScanError::ZeroRate
        );
        assert!(matches!(
            Scan::subnet(ScanConfig::new(ME), "10.0.0.0/8".parse().unwrap()),
            Err(ScanError::TooLarge(_))
        ));
        assert!(matches!(
            Scan::subnet(ScanConfig::new(ME), "fd77:130::/64".parse().unwrap()),
            Err(ScanError::TooLarge(_))
        ));
        assert_eq!(
            Scan::new(ScanConfig::new(ME), [IpAddr::V4(Ipv4Addr::BROADCAST)]).unwrap_err(),
            ScanError::NotUnicast(IpAddr::V4(Ipv4Addr::BROADCAST))
        );
        assert_eq!(
            Scan::new(ScanConfig::new(ME), []).unwrap_err(),
            ScanError::Empty
        );
        assert!(matches!(
            Scan::new(
                ScanConfig::new(Mac::BROADCAST),
                [IpAddr::V4(Ipv4Addr::LOCALHOST)]
            ),
            Err(ScanError::SourceMac(_))
        ));
    }
}
