#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maas_fuzz::check_ipam_journal(data));
