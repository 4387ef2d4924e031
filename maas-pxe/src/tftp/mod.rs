//! TFTP for network boot (RFC 1350, with the option extensions RFC 2347, 2348, 2349 and
//! 7440), sans-IO.
//!
//! Layers:
//!
//! 1. **Wire**: [`Packet::decode`] reads a datagram strictly (an error, never a panic) and
//!    [`Packet::encode`] writes it back.
//! 2. **Files**: a [`FileProvider`] opens what a client asks for: [`RootDir`] (which no name
//!    can escape), [`Generated`] per-machine configuration (`pxelinux.cfg/01-<mac>`,
//!    `grub/grub.cfg-<mac>`), and [`Layered`] combinations.
//! 3. **Transfers**: [`respond`] decides on a request and [`Transfer`] runs one read transfer
//!    (options, windows, adaptive retransmission, block-number rollover); [`Client`] is the
//!    other side; [`Receive`] runs a write request when uploads are enabled, stored by
//!    [`UploadDir`]. All take time as an argument and do no network I/O.
//! 4. **Service** (feature `tokio`): [`service`] serves a provider on UDP with one socket per
//!    transfer (or one port for all), session and request-rate limits and metrics, and
//!    [`service::fetch`] is the client on tokio.
//!
//! ```
//! use std::time::Instant;
//! use maas_pxe::tftp::{self, Client, ClientConfig, Response, ServerConfig};
//!
//! let server_addr = "10.77.100.1:69".parse()?;
//! let client_addr = "10.77.100.2:40000".parse()?;
//! let files = tftp::Generated::new(|_file, _client| Some(b"DEFAULT local\n".to_vec()));
//! let now = Instant::now();
//!
//! let mut config = ClientConfig::default();
//! config.blksize(1468).tsize(true);
//! let mut client = Client::new(now, server_addr, "pxelinux.cfg/01-52-54-00-77-00-10", config);
//! let (_, request) = client.poll_transmit().unwrap();
//! let Response::Start(mut transfer) =
//!     tftp::respond(now, &request, client_addr, &files, &ServerConfig::default())
//! else {
//!     panic!("refused")
//! };
//! let transfer_addr = "10.77.100.1:50000".parse()?;
//! let mut buf = Vec::new();
//! while !client.is_finished() {
//!     while transfer.poll_transmit(now, &mut buf) {
//!         client.handle_datagram(now, transfer_addr, &buf);
//!     }
//!     while let Some((_, ack)) = client.poll_transmit() {
//!         transfer.handle_datagram(now, &ack);
//!     }
//! }
//! assert_eq!(client.take_data(), b"DEFAULT local\n");
//! assert!(matches!(transfer.poll_event(), Some(tftp::Event::Completed(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod error;
mod negotiate;
pub mod netascii;
mod provider;
mod server;
mod upload;
pub mod wire;

#[cfg(feature = "tokio")]
mod direct;
#[cfg(feature = "tokio")]
pub mod service;

pub use client::{Client, ClientConfig};
pub use error::{ClientError, ProviderError, WireError};
pub use negotiate::{MAX_WINDOW, ServerConfig};
pub use provider::{
    Content, FileProvider, Generated, Layered, MAX_COMPONENT, MAX_PATH, MachineFile, MachineId,
    RootDir, safe_components,
};
pub use server::{DataBlock, Event, Refusal, Response, Summary, Transfer, respond};
pub use upload::{PendingFile, Receive, UploadDir, WriteConfig};
pub use wire::{ErrorCode, Mode, Options, Packet, Request};
