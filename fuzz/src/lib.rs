//! The properties the fuzz targets check: `checks` for the parsers of `maas-net`, `ipam` for
//! the address manager of `maas-ipam`, `pxe` for the DHCP layer of `maas-pxe`, `server` for its server engine, `tftp` for its TFTP layer. They live in
//! separate files because each is also included by its crate's corpus replay test, which can
//! depend on that crate only.

mod checks;
mod ipam;
mod pxe;
mod server;
mod tftp;

pub use checks::*;
pub use ipam::*;
pub use pxe::*;
pub use server::*;
pub use tftp::*;
