//! The neighbour table: decoded frames in, discovery events out.
//!
//! [`Observer`] does no I/O and reads no clock. Call order:
//!
//! 1. [`Observer::handle_frame`] for every decoded frame, with the monotonic time `now` (for
//!    the windows and rate limits) and the wall-clock time `wall` (written into events);
//! 2. [`Observer::poll_event`] until it returns `None`;
//! 3. [`Observer::handle_timeout`] when [`Observer::poll_timeout`]'s instant has passed,
//!    which evicts stale entries.
//!
//! The table is keyed by (VLAN id, IP address). Bindings (an address used by a MAC) come from
//! ARP requests and replies, neighbour solicitations with a source link-layer address,
//! advertisements and the sources of mDNS responses. ARP probes (sender `0.0.0.0`) and IPv6
//! duplicate address detection are claims, not bindings: they raise a CONFLICT when the
//! address is in use by another MAC, or claimed by another MAC within the conflict window.
//! A gratuitous ARP (and an unsolicited neighbour advertisement with the override flag) is
//! authoritative: it moves an address at once. Any other binding from a second MAC while the
//! first one was seen within the conflict window is a CONFLICT, not a move.
//!
//! Memory is bounded: entries not seen for [`ObserverConfig::entry_ttl_secs`] are evicted,
//! and when the table is full the least recently seen eighth is evicted to make room. Events
//! not polled beyond [`ObserverConfig::max_events`] are dropped and counted.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use maas_net::{Mac, Timestamp};
use serde::{Deserialize, Serialize};

use crate::wire::{ArpOp, Frame, MdnsRecord, NdpKind, Payload};

/// How often [`Observer::poll_timeout`] asks for a sweep of stale entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What the observer does: intervals, windows and bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserverConfig {
    /// The interface name written into events.
    pub interface: String,
    /// REFRESHED is emitted at most once per this many seconds per entry (default 600).
    pub refresh_interval_secs: u64,
    /// Two MACs using one address within this many seconds conflict (default 10).
    pub conflict_window_secs: u64,
    /// A move back to the previous MAC within this many seconds of the last move is a
    /// FLIP_FLOP (default 600).
    pub flip_flop_window_secs: u64,
    /// Entries not seen for this many seconds are evicted (default 14400, four hours).
    pub entry_ttl_secs: u64,
    /// At most this many entries (and as many pending claims) are kept (default 65536).
    pub max_entries: usize,
    /// At most this many events wait to be polled; more are dropped (default 65536).
    pub max_events: usize,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            interface: String::new(),
            refresh_interval_secs: 600,
            conflict_window_secs: 10,
            flip_flop_window_secs: 600,
            entry_ttl_secs: 4 * 3600,
            max_entries: 65536,
            max_events: 65536,
        }
    }
}

impl ObserverConfig {
    /// The defaults, for `interface`.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            ..Self::default()
        }
    }

    /// Sets the REFRESHED interval in seconds.
    pub fn refresh_interval_secs(&mut self, secs: u64) -> &mut Self {
        self.refresh_interval_secs = secs;
        self
    }

    /// Sets the conflict window in seconds.
    pub fn conflict_window_secs(&mut self, secs: u64) -> &mut Self {
        self.conflict_window_secs = secs;
        self
    }

    /// Sets the flip-flop window in seconds.
    pub fn flip_flop_window_secs(&mut self, secs: u64) -> &mut Self {
        self.flip_flop_window_secs = secs;
        self
    }

    /// Sets the time in seconds after which unseen entries are evicted.
    pub fn entry_ttl_secs(&mut self, secs: u64) -> &mut Self {
        self.entry_ttl_secs = secs;
        self
    }

    /// Sets the table's capacity (at least 1).
    pub fn max_entries(&mut self, n: usize) -> &mut Self {
        self.max_entries = n.max(1);
        self
    }

    /// Sets how many unpolled events are kept.
    pub fn max_events(&mut self, n: usize) -> &mut Self {
        self.max_events = n;
        self
    }
}

/// The kind of a discovery event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// An address seen for the first time (or again after its entry was evicted).
    New,
    /// An address still in use by the same MAC (at most once per refresh interval).
    Refreshed,
    /// An address now used by another MAC; `previous_mac` is the one before.
    Moved,
    /// An address moved back to the MAC it had before the last move, within the flip-flop
    /// window.
    FlipFlop,
    /// Two MACs claim one address: `mac` is the newcomer, `previous_mac` the one holding or
    /// claiming it.
    Conflict,
    /// mDNS named the address: `hostname` is set.
    Hostname,
}

/// A discovery event, as a serde record (one JSON object per event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The address.
    pub ip: IpAddr,
    /// The MAC using (or, for CONFLICT, claiming) the address.
    pub mac: Mac,
    /// For MOVED and FLIP_FLOP the MAC before; for CONFLICT the other MAC.
    pub previous_mac: Option<Mac>,
    /// The VLAN id (0: untagged).
    pub vid: u16,
    /// The host name learned from mDNS, if any.
    pub hostname: Option<String>,
    /// The interface the frames were captured on.
    pub interface: String,
    /// When this (address, MAC) binding was first seen.
    pub first_seen: Timestamp,
    /// When it was last seen.
    pub last_seen: Timestamp,
}

/// A row of the neighbour table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The VLAN id (0: untagged).
    pub vid: u16,
    /// The address.
    pub ip: IpAddr,
    /// The MAC using it.
    pub mac: Mac,
    /// The MAC that used it before the last move.
    pub previous_mac: Option<Mac>,
    /// The mDNS host name.
    pub hostname: Option<String>,
    /// When the binding was first seen.
    pub first_seen: Timestamp,
    /// When it was last seen.
    pub last_seen: Timestamp,
}

/// Counters, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Frames handled.
    pub frames: u64,
    /// Entries evicted (stale or for room).
    pub evicted: u64,
    /// Events dropped because nobody polled them.
    pub dropped_events: u64,
}

type Key = (u16, IpAddr);

/// The table's maps: a fast hash with a per-process random seed, so that frames crafted to
/// collide cannot be precomputed.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone)]
struct Entry {
    mac: Mac,
    previous_mac: Option<Mac>,
    hostname: Option<String>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    seen_at: Instant,
    reported_at: Instant,
    moved_at: Option<Instant>,
    /// The last CONFLICT reported for this entry: the other MAC and when.
    conflict: Option<(Mac, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    mac: Mac,
    at: Instant,
    wall: Timestamp,
    reported: bool,
}

/// The neighbour table and its event queue (sans-IO; see the module docs for the call order).
#[derive(Debug)]
pub struct Observer {
    config: ObserverConfig,
    refresh: Duration,
    conflict_window: Duration,
    flip_flop: Duration,
    ttl: Duration,
    entries: HashMap<Key, Entry>,
    claims: HashMap<Key, Claim>,
    pending_names: HashMap<Key, (String, Instant)>,
    events: VecDeque<Event>,
    next_sweep: Option<Instant>,
    stats: Stats,
}

impl Observer {
    /// An empty table.
    pub fn new(config: ObserverConfig) -> Self {
        let secs = Duration::from_secs;
        Self {
            refresh: secs(config.refresh_interval_secs),
            conflict_window: secs(config.conflict_window_secs),
            flip_flop: secs(config.flip_flop_window_secs),
            ttl: secs(config.entry_ttl_secs),
            config,
            entries: HashMap::default(),
            claims: HashMap::default(),
            pending_names: HashMap::default(),
            events: VecDeque::new(),
            next_sweep: None,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    /// Learns from one decoded frame seen at `now` (monotonic) and `wall` (wall clock).
    pub fn handle_frame(&mut self, now: Instant, wall: Timestamp, frame: &Frame) {
        self.stats.frames += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        let vid = frame.vid;
        match &frame.payload {
            Payload::Arp(arp) => {
                if !matches!(arp.operation, ArpOp::Request | ArpOp::Reply) {
                    return;
                }
                if arp.is_probe() {
                    self.claim(now, wall, vid, IpAddr::V4(arp.target_ip), arp.sender_mac);
                } else {
                    let authoritative = arp.is_gratuitous();
                    self.bind(
                        now,
                        wall,
                        vid,
                        IpAddr::V4(arp.sender_ip),
                        arp.sender_mac,
                        authoritative,
                    );
                }
            }
            Payload::Ndp(ndp) => match ndp.kind {
                NdpKind::Solicitation if ndp.is_dad() => {
                    self.claim(now, wall, vid, IpAddr::V6(ndp.target), frame.source);
                }
                NdpKind::Solicitation => {
                    let mac = ndp.link_layer.unwrap_or(frame.source);
                    self.bind(now, wall, vid, IpAddr::V6(ndp.source_ip), mac, false);
                }
                NdpKind::Advertisement {
                    solicited,
                    override_flag,
                    ..
                } => {
                    let mac = ndp.link_layer.unwrap_or(frame.source);
                    let authoritative = override_flag && !solicited;
                    self.bind(now, wall, vid, IpAddr::V6(ndp.target), mac, authoritative);
                }
            },
            Payload::Mdns(mdns) => {
                self.bind(now, wall, vid, mdns.source_ip, frame.source, false);
                for record in &mdns.records {
                    if let MdnsRecord::Address { host, ip } | MdnsRecord::Reverse { ip, host } =
                        record
                    {
                        let hint = (*ip == mdns.source_ip).then_some(frame.source);
                        self.name(now, wall, vid, *ip, host, hint);
                    }
                }
            }
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Observer::handle_timeout`] should next be called to evict stale entries.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.entries.is_empty() && self.claims.is_empty() && self.pending_names.is_empty() {
            return None;
        }
        self.next_sweep
    }

    /// Evicts entries not seen for the entry TTL, and expired claims.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        let ttl = self.ttl;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen_at) < ttl);
        self.stats.evicted += (before - self.entries.len()) as u64;
        let window = self.conflict_window;
        self.claims
            .retain(|_, c| now.saturating_duration_since(c.at) < window);
        self.pending_names
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
    }

    /// The entry for `ip` on VLAN `vid`.
    pub fn get(&self, vid: u16, ip: IpAddr) -> Option<Neighbour> {
        self.entries
            .get(&(vid, ip))
            .map(|e| Self::neighbour((vid, ip), e))
    }

    /// Every entry, in no particular order.
    pub fn neighbours(&self) -> impl Iterator<Item = Neighbour> + '_ {
        self.entries.iter().map(|(k, e)| Self::neighbour(*k, e))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn neighbour((vid, ip): Key, e: &Entry) -> Neighbour {
        Neighbour {
            vid,
            ip,
            mac: e.mac,
            previous_mac: e.previous_mac,
            hostname: e.hostname.clone(),
            first_seen: e.first_seen,
            last_seen: e.last_seen,
        }
    }

    /// Whether `ip` can be a neighbour's own address (not a group, broadcast or nothing).
    fn is_neighbour_address(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        }
    }

    fn bind(
        &mut self,
        now: Instant,
        wall: Timestamp,
        vid: u16,
        ip: IpAddr,
        mac: Mac,
        authoritative: bool,
    ) {
        if !Self::is_neighbour_address(ip) || !mac.is_unicast() || mac == Mac::ZERO {
            return;
        }
        let key = (vid, ip);
        if !self.claims.is_empty()
            && let Some(claim) = self.claims.remove(&key)
            && claim.mac != mac
            && now.saturating_duration_since(claim.at) < self.conflict_window
            && !claim.reported
        {
            // Somebody probed for the address another MAC now uses.
            self.push(Event {
                event: EventKind::Conflict,
                ip,
                mac,
                previous_mac: Some(claim.mac),
                vid,
                hostname: self.entries.get(&key).and_then(|e| e.hostname.clone()),
                interface: self.config.interface.clone(),
                first_seen: claim.wall,
                last_seen: wall,
            });
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            self.insert(now, wall, key, mac);
            return;
        };
        if entry.mac == mac {
            entry.last_seen = wall;
            entry.seen_at = now;
            if now.saturating_duration_since(entry.reported_at) >= self.refresh {
                entry.reported_at = now;
                let event = Self::event(&self.config, EventKind::Refreshed, key, entry, None);
                self.push(event);
            }
            return;
        }
        let recent = now.saturating_duration_since(entry.seen_at) < self.conflict_window;
        if recent && !authoritative {
            let already = entry.conflict.is_some_and(|(other, at)| {
                other == mac && now.saturating_duration_since(at) < self.conflict_window
            });
            if !already {
                entry.conflict = Some((mac, now));
                let mut event = Self::event(
                    &self.config,
                    EventKind::Conflict,
                    key,
                    entry,
                    Some(entry.mac),
                );
                event.mac = mac;
                self.push(event);
            }
            return;
        }
        let flip = entry.previous_mac == Some(mac)
            && entry
                .moved_at
                .is_some_and(|at| now.saturating_duration_since(at) < self.flip_flop);
        let previous = entry.mac;
        entry.previous_mac = Some(previous);
        entry.mac = mac;
        entry.moved_at = Some(now);
        entry.seen_at = now;
        entry.reported_at = now;
        entry.first_seen = wall;
        entry.last_seen = wall;
        entry.hostname = None;
        entry.conflict = None;
        let kind = if flip {
            EventKind::FlipFlop
        } else {
            EventKind::Moved
        };
        let event = Self::event(&self.config, kind, key, entry, Some(previous));
        self.push(event);
    }

    fn claim(&mut self, now: Instant, wall: Timestamp, vid: u16, ip: IpAddr, mac: Mac) {
        if !Self::is_neighbour_address(ip) || !mac.is_unicast() {
            return;
        }
        let key = (vid, ip);
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.mac == mac {
                return;
            }
            // A probe for an address in use by another MAC.
            let already = entry.conflict.is_some_and(|(other, at)| {
                other == mac && now.saturating_duration_since(at) < self.conflict_window
            });
            if !already {
                entry.conflict = Some((mac, now));
                let mut event = Self::event(
                    &self.config,
                    EventKind::Conflict,
                    key,
                    entry,
                    Some(entry.mac),
                );
                event.mac = mac;
                event.last_seen = wall;
                self.push(event);
            }
            return;
        }
        let mut reported = false;
        if let Some(other) = self.claims.get(&key)
            && other.mac != mac
            && now.saturating_duration_since(other.at) < self.conflict_window
        {
            // Two devices probing for the same free address at once.
            reported = true;
            if !other.reported {
                self.push(Event {
                    event: EventKind::Conflict,
                    ip,
                    mac,
                    previous_mac: Some(other.mac),
                    vid,
                    hostname: None,
                    interface: self.config.interface.clone(),
                    first_seen: other.wall,
                    last_seen: wall,
                });
            }
        }
        if self.claims.len() >= self.config.max_entries && !self.claims.contains_key(&key) {
            let window = self.conflict_window;
            self.claims
                .retain(|_, c| now.saturating_duration_since(c.at) < window);
            if self.claims.len() >= self.config.max_entries {
                return;
            }
        }
        self.claims.insert(
            key,
            Claim {
                mac,
                at: now,
                wall,
                reported,
            },
        );
    }

    fn name(
        &mut self,
        now: Instant,
        wall: Timestamp,
        vid: u16,
        ip: IpAddr,
        host: &str,
        hint: Option<Mac>,
    ) {
        if !Self::is_neighbour_address(ip) || host.is_empty() {
            return;
        }
        let key = (vid, ip);
        if !self.entries.contains_key(&key) {
            match hint {
                Some(mac) => self.bind(now, wall, vid, ip, mac, false),
                None => {
                    // Named before it was seen: kept until the address shows up.
                    if self.pending_names.len() < self.config.max_entries
                        || self.pending_names.contains_key(&key)
                    {
                        self.pending_names.insert(key, (host.to_string(), now));
                    }
                    return;
                }
            }
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.hostname.as_deref() == Some(host) {
            return;
        }
        entry.hostname = Some(host.to_string());
        let event = Self::event(&self.config, EventKind::Hostname, key, entry, None);
        self.push(event);
    }

    fn insert(&mut self, now: Instant, wall: Timestamp, key: Key, mac: Mac) {
        if self.entries.len() >= self.config.max_entries {
            self.make_room(now);
        }
        let entry = Entry {
            mac,
            previous_mac: None,
            hostname: None,
            first_seen: wall,
            last_seen: wall,
            seen_at: now,
            reported_at: now,
            moved_at: None,
            conflict: None,
        };
        let event = Self::event(&self.config, EventKind::New, key, &entry, None);
        self.entries.insert(key, entry);
        self.push(event);
        if let Some((host, _)) = self.pending_names.remove(&key)
            && let Some(entry) = self.entries.get_mut(&key)
        {
            entry.hostname = Some(host);
            let event = Self::event(&self.config, EventKind::Hostname, key, entry, None);
            self.push(event);
        }
    }

    /// Evicts stale entries, and if that is not enough, the least recently seen eighth, so
    /// that a flood of new addresses costs amortised constant time per insert.
    fn make_room(&mut self, now: Instant) {
        let before = self.entries.len();
        let ttl = self.ttl;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen_at) < ttl);
        if self.entries.len() >= self.config.max_entries {
            let mut seen: Vec<Instant> = self.entries.values().map(|e| e.seen_at).collect();
            let cut = (seen.len() / 8).max(1).min(seen.len() - 1);
            let (_, threshold, _) = seen.select_nth_unstable(cut);
            let threshold = *threshold;
            self.entries.retain(|_, e| e.seen_at > threshold);
            // Ties at the threshold could keep the table full; drop one more if so.
            if self.entries.len() >= self.config.max_entries
                && let Some(k) = self.entries.keys().next().copied()
            {
                self.entries.remove(&k);
            }
        }
        self.stats.evicted += (before - self.entries.len()) as u64;
    }

    fn event(
        config: &ObserverConfig,
        kind: EventKind,
        (vid, ip): Key,
        e: &Entry,
        previous_mac: Option<Mac>,
    ) -> Event {
        Event {
            event: kind,
            ip,
            mac: e.mac,
            previous_mac,
            vid,
            hostname: e.hostname.clone(),
            interface: config.interface.clone(),
            first_seen: e.first_seen,
            last_seen: e.last_seen,
        }
    }

    fn push(&mut self, event: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.dropped_events += 1;
        } else {
            self.events.push_back(event);
        }
    }
}

#[cfg(test)]
mod tests;
