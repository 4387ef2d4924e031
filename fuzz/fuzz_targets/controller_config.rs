//! The example controller's configuration loader: any text gives a configuration or a list
//! of problems, never a panic; an accepted file's machines have distinct MACs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/config.rs"]
#[allow(dead_code, unreachable_pub)]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, std::path::Path::new("/srv/maas")) {
        Ok(config) => {
            let mut macs: Vec<_> = config.machines.iter().map(|m| m.mac).collect();
            let n = macs.len();
            macs.sort();
            macs.dedup();
            assert_eq!(macs.len(), n, "duplicate MACs accepted");
        }
        Err(problems) => assert!(!problems.is_empty(), "refused without a reason"),
    }
});
