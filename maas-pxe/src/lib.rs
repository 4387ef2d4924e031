//! PXE and HTTP-boot DHCP, and TFTP, for maas-rs.
//!
//! A machine powered on for provisioning broadcasts a DHCP request from its firmware: BIOS
//! PXE, UEFI PXE, UEFI HTTP boot, iPXE, or the boot firmware of a POWER or IBM Z machine. This
//! crate answers the question "which boot file does it get, and with which options", the way
//! MAAS answers it.
//!
//! The [`dhcp`] module has four layers:
//!
//! 1. **Wire**: [`dhcp::v4::decode`] and [`dhcp::v6::decode`] decode strictly on top of
//!    dhcproto: a truncated datagram, an option whose length runs past its field or a value an
//!    option does not allow is an error naming it, never a panic and never a shorter option
//!    list. Option overload (52) and long options (RFC 3396) are honoured. The encoders write
//!    what the decoders read back.
//! 2. **Classification**: [`dhcp::BootClient`] reads what the firmware says about itself
//!    (option 93's whole architecture list, the `PXEClient:Arch:` vendor class, the iPXE user
//!    class in both its forms, the machine UUID, the interface identifier; DHCPv6 options 61,
//!    16 and 15), and [`dhcp::BootConfig::classify`] chooses its boot method from MAAS's table
//!    (data, overridable per deployment) and the subnet's disabled boot architectures.
//! 3. **Answer**: [`dhcp::reply_to`], [`dhcp::LeaseTimes`], [`dhcp::NetworkOptions`] and
//!    [`dhcp::build_boot_options`] fill a [`dhcp::Reply`] or a dhcproto message (or give
//!    DHCPv6 options) for the server engine to send, honouring the client's parameter request
//!    list.
//! 4. **Server**: [`dhcp::server::Server4`] and [`dhcp::server::Server6`] run the DHCPv4
//!    and DHCPv6 protocols on top of the three layers above, with leases from any
//!    [`dhcp::server::Leases`] (feature `ipam`: maas-ipam, in memory or durable). Feature
//!    `tokio` adds the network service that feeds them datagrams.
//!
//! The [`tftp`] module serves what the firmware then loads: a strict TFTP codec, a sans-IO
//! windowed transfer engine and client (RFC 1350, 2347, 2348, 2349, 7440), file providers
//! that cannot be escaped or that generate per-machine files, and (feature `tokio`) the
//! TFTP service.
//!
//! Everything but the `tokio` services does no I/O and reads no clock: bytes in, values out.
//!
//! ```
//! use dhcproto::v4::MessageType;
//! use maas_net::{BootArchitecture, Subnet, VlanId};
//! use maas_pxe::dhcp::{self, BootClient, BootConfig, LeaseTimes, NetworkOptions};
//!
//! // A UEFI x86-64 PXE DISCOVER, as edk2 sends it.
//! let request = dhcp::v4::decode(include_bytes!("../testdata/edk2-x64-pxe-discover.bin"))?;
//! let client = BootClient::from_v4(&request);
//! assert_eq!(client.architectures, [7]);
//! assert!(client.is_pxe_client());
//!
//! let config = BootConfig::default();
//! let subnet = Subnet {
//!     gateway_ip: Some("10.77.0.1".parse()?),
//!     ..Subnet::new("10.77.0.0/24".parse()?, VlanId::new(0))
//! };
//! let classification = config.classify(client, &subnet);
//! assert_eq!(classification.architecture(), Some(BootArchitecture::UefiAmd64Tftp));
//!
//! let server = "10.77.0.1".parse()?;
//! let mut offer = dhcp::reply_to(&request, MessageType::Offer, server);
//! offer.set_yiaddr("10.77.0.100".parse()?);
//! let requested = request.requested();
//! LeaseTimes::new(600).apply(&mut offer);
//! NetworkOptions::for_subnet(&subnet, 1500).apply(&mut offer, &requested);
//! let boot = dhcp::build_boot_options(&classification, &config, server.into()).unwrap();
//! boot.apply_v4(&mut offer, &requested);
//! assert_eq!(offer.file(), Some(&b"bootx64.efi"[..]));
//! assert_eq!(offer.get(60), Some(&b"PXEClient"[..]));
//!
//! let bytes = offer.to_vec();
//! let sent = dhcp::v4::decode(&bytes)?;
//! assert_eq!(sent.message_type(), Some(MessageType::Offer));
//! assert_eq!(sent.siaddr(), server);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// Denied everywhere but in `tftp::direct` (zero-copy sends from a file mapping) and the DHCP
// service's `sendmmsg` (`dhcp::server::adapter::mmsg`), which say why.
#![deny(unsafe_code)]

pub mod dhcp;
pub mod tftp;

/// The DHCP codec whose message types this crate's API speaks.
pub use dhcproto;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
