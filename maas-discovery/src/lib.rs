#![doc = include_str!("../README.md")]
//!
//! # Layers
//!
//! - [`wire`]: decoding of the frames and encoding of probes. Does no I/O.
//! - [`observer`]: the neighbour table keyed by (VLAN, IP), which turns decoded frames into
//!   [`Event`]s. Does no I/O and reads no clock: time is passed in.
//! - [`scan`]: the active scan planner. Does no I/O.
//! - `capture` (Linux): the `AF_PACKET` socket that feeds the layers above and sends a scan's
//!   probes; with the `tokio` feature, `AsyncCapture` on `AsyncFd`.
//! - `watch` (Linux, feature `tokio`): the driver of the layers above on one interface, a
//!   capture feeding an observer and periodic scans of subnets chosen at each round, so that
//!   applications do not each rewrite that loop.
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod capture;
pub mod observer;
pub mod scan;
#[cfg(all(target_os = "linux", feature = "tokio"))]
pub mod watch;
pub mod wire;

pub use observer::{Event, EventKind, Observer, ObserverConfig};
pub use scan::{Scan, ScanConfig, ScanError};
pub use wire::{Frame, Payload, WireError, parse_frame};
