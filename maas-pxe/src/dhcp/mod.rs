//! The DHCP half of PXE and HTTP boot: the wire (strict DHCPv4 and DHCPv6 decoding on top of
//! dhcproto), the options booting firmware sends, the classification of a client and its
//! boot method, and the options of the answer.
//!
//! - [`v4`] and [`v6`]: [`v4::decode`] and [`v6::decode`] turn a datagram into a message or a
//!   [`DecodeError`] naming what is wrong; [`v4::encode`] and [`v6::encode`] write one back.
//! - [`options`](mod@options): parsers and builders for the option values of network boot
//!   (architectures, vendor and user classes, UUID, interface identifier, PXE vendor
//!   sub-options, boot-file parameters).
//! - [`BootClient`] and [`Classification`]: what a request says about its firmware, and the
//!   boot method [`BootConfig::classify`] chooses for it from the [`BootConfig`] table and the
//!   subnet's disabled boot architectures.
//! - [`reply_to`], [`LeaseTimes`], [`NetworkOptions`], [`build_boot_options`] and
//!   [`BootOptions`]: the pieces of an answer, which honour the client's parameter request
//!   list as the [`reply`](mod@reply) module describes. They fill a [`Reply`] (raw values,
//!   cheap to build and encode) or a dhcproto [`v4::Message`](dhcproto::v4::Message), through
//!   [`ReplyOptions`].
//!
//! Nothing here does I/O or reads a clock.

mod boot;
mod classify;
mod error;
pub mod options;
pub mod reply;
pub mod server;
pub mod v4;
pub mod v6;

pub use boot::{BootConfig, BootMethod, MAAS_HTTP_PORT};
pub use classify::{ArchSource, BootClient, Classification, NoBoot};
pub use error::{Area, ConfigError, DecodeError, EncodeError, LengthRule, OptionError};
pub use options::{
    BootItem, BootServers, IpxeFeatures, MachineId, MenuItem, MenuPrompt, Ndi, PxeVendorOptions,
    RawSubOption, RequestedOptions, UndiVersion, UserClass, VendorClass, VendorKind,
    encode_boot_file_params, parse_architectures, parse_boot_file_params,
};
pub use reply::{
    BootOptions, LeaseTimes, NetworkOptions, ReplyOptions, VENDOR_CLASS_ENTERPRISE,
    build_boot_options, build_proxy_boot_options, encode_names, reply_to,
};
pub use v4::Reply;
