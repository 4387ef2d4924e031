//! The properties the fuzz targets check: `checks` for the parsers of `maas-net`, `netconfig`
//! for its machine documents and renderers, `ipam` for
//! the address manager of `maas-ipam`, `journal` for its store's journal, `pxe` for the DHCP layer of `maas-pxe`, `server` for its
//! server engine, `tftp` for its TFTP layer, `discovery` for the decoders and observer of
//! `maas-discovery`, `power` for the IPMI and Redfish decoders of `maas-power`, `proxy` for the
//! request checks of `maas-proxy`. They live in
//! separate files because each is also included by its crate's corpus replay test, which can
//! depend on that crate only.

mod checks;
mod discovery;
mod ipam;
mod journal;
mod netconfig;
mod power;
mod proxy;
mod pxe;
mod server;
mod tftp;

pub use checks::*;
pub use discovery::*;
pub use ipam::*;
pub use journal::*;
pub use netconfig::*;
pub use power::*;
pub use proxy::*;
pub use pxe::*;
pub use server::*;
pub use tftp::*;
