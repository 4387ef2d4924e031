#![doc = include_str!("../README.md")]
//!
//! # Layers
//!
//!
//! By listening to ARP, IPv6 neighbour discovery and mDNS, discovery learns which devices
//! live on each network and VLAN, with their MAC, IP address and host name, and notices when an
//! address moves to another device or is claimed by two.
//!
//! The crate has layers:
//!
//! - [`wire`]: decoding of the frames (Ethernet, 802.1Q, ARP, NDP, mDNS) and encoding of
//!   probes. Does no I/O.
//! - [`observer`]: the neighbour table keyed by (VLAN, IP), which turns decoded frames into
//!   [`Event`]s (NEW, REFRESHED, MOVED, FLIP_FLOP, CONFLICT, HOSTNAME). Does no I/O and
//!   reads no clock: time is passed in.
//! - [`scan`]: an active ARP/NDP scan planner that paces probes and records who answered.
//!   Does no I/O.
//! - [`capture`] (Linux): an `AF_PACKET` socket with a BPF filter per interface that feeds
//!   the layers above, and sends a scan's probes; with the `tokio` feature, an async
//!   adapter on `AsyncFd`.
//!
//! ```
//! use std::time::Instant;
//! use std::net::Ipv4Addr;
//! use maas_discovery::{EventKind, Observer, ObserverConfig, wire::{Arp, parse_frame}};
//! use maas_net::{Mac, Timestamp};
//!
//! let mut observer = Observer::new(ObserverConfig::new("eth0"));
//! let mac = Mac::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
//! // A gratuitous ARP: 10.77.130.7 is at 52:54:00:12:34:56.
//! let mut arp = Arp::probe(mac, Ipv4Addr::new(10, 77, 130, 7));
//! arp.sender_ip = arp.target_ip;
//! let frame = parse_frame(&arp.emit_frame(0)).unwrap().unwrap();
//! observer.handle_frame(Instant::now(), Timestamp(1_700_000_000), &frame);
//! let event = observer.poll_event().unwrap();
//! assert_eq!(event.event, EventKind::New);
//! assert_eq!(event.mac, mac);
//! ```
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod capture;
pub mod observer;
pub mod scan;
pub mod wire;

pub use observer::{Event, EventKind, Observer, ObserverConfig};
pub use scan::{Scan, ScanConfig, ScanError};
pub use wire::{Frame, Payload, WireError, parse_frame};
