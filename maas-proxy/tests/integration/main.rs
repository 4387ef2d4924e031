//! Integration tests of `maas-proxy`: the fuzz corpus replayed, and (feature `tokio`) the
//! server on loopback.

mod fuzz_corpus;
#[cfg(feature = "tokio")]
mod server;
