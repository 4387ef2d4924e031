//! The web dashboard's checks on a browser's raw headers: the session cookie among others,
//! the CSRF token, and the `Origin` against `Host`. Any bytes (a header line, a newline, a
//! second one) are answered, never a panic, and the checks agree with themselves.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/web/csrf.rs"]
#[allow(dead_code, unreachable_pub)]
mod csrf;

fuzz_target!(|data: &[u8]| csrf::check(data));
