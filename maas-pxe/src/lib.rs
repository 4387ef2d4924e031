//! PXE and HTTP-boot DHCP for maas-rs.
#![forbid(unsafe_code)]
