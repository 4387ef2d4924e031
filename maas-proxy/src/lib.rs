//! A caching forward HTTP proxy for provisioned machines: what deploying machines use for
//! package and image downloads.
//!
//! Layers:
//! - [`acl`]: who may use the proxy (the subnets with `allow_proxy`, plus loopback) and where
//!   it may go (CONNECT only to 443, safe ports, no denied destination networks). No I/O.
//! - [`request`]: request checks: target form, request smuggling, header limits, `Via` loops,
//!   the fields sent upstream. No I/O.
//! - [`policy`]: RFC 9111 caching through `http-cache-semantics`, with the apt rules MAAS
//!   gives squid, and `Range` answers from a stored object. No I/O; time is passed in.
//! - `store` and `server` (feature `tokio`): the crash-safe, size-bounded on-disk store with a
//!   memory tier and collapsed forwarding, and the proxy server on hyper.
//!
//! ```
//! use maas_proxy::acl::{Acl, AclConfig};
//! use maas_proxy::request::{Limits, parse_and_check};
//!
//! let acl = Acl::new(&AclConfig { allow: vec!["10.77.180.0/24".parse().unwrap()], ..AclConfig::default() });
//! let raw = b"GET http://archive.ubuntu.com/ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: archive.ubuntu.com\r\n\r\n";
//! let checked = parse_and_check(raw, &Limits::default(), &acl, "10.77.180.20".parse().unwrap(), "maas-proxy")
//!     .unwrap()
//!     .expect("complete head");
//! assert_eq!(checked.target.port, 80);
//! assert_eq!(checked.headers["via"], "1.1 maas-proxy");
//! // Someone else gets 403, and nothing is fetched.
//! let refused = parse_and_check(raw, &Limits::default(), &acl, "192.0.2.7".parse().unwrap(), "maas-proxy");
//! assert_eq!(refused.unwrap_err().status(), 403);
//! ```
#![forbid(unsafe_code)]

pub mod acl;
mod error;
pub mod metrics;
pub mod policy;
pub mod request;
#[cfg(feature = "tokio")]
pub mod server;
#[cfg(feature = "tokio")]
pub mod store;

pub use acl::{Acl, AclConfig};
pub use error::{Refusal, ServerError, StoreError};
pub use metrics::{Metrics, MetricsSnapshot};

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
