//! The health a rack's calls carry to its region (`x-maas-rack-dhcp`, `x-maas-rack-queued`):
//! any bytes are read or refused, never a panic, and what is read writes back as a value read
//! the same.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/protocol/health.rs"]
#[allow(dead_code, unreachable_pub)]
mod health;

fuzz_target!(|data: &[u8]| health::check(data));
