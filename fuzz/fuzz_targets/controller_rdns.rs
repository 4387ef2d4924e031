//! The controller's reverse DNS answer parser: any bytes give a name or an error, never a
//! panic; a name it gives is non-empty and has no final dot.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/rdns.rs"]
#[allow(dead_code, unreachable_pub)]
mod rdns;

fuzz_target!(|data: &[u8]| {
    for ip in ["10.77.63.20", "fd77:63::20"] {
        let ip = ip.parse().unwrap();
        if let Ok(Some(name)) = rdns::answer(data, 7, ip) {
            assert!(!name.is_empty() && !name.ends_with('.'), "{name:?}");
        }
    }
});
