//! Replays the committed fuzz corpora of the DHCP layer (`fuzz/corpus/dhcp4_decode/`,
//! `fuzz/corpus/dhcp6_decode/` and `fuzz/corpus/pxe_classify_reply/`) under `cargo test`, so
//! every input the fuzz targets have found interesting is checked in ordinary CI, without
//! libFuzzer.
//!
//! The checks are the fuzz targets' own: this file includes `fuzz/src/pxe.rs`, which the
//! targets call. Each corpus directory must exist and hold at least one input.

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/pxe.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn dhcp4_decode_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/dhcp4_decode"),
        checks::check_dhcp4_decode,
    );
}

#[test]
fn dhcp6_decode_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/dhcp6_decode"),
        checks::check_dhcp6_decode,
    );
}

#[test]
fn pxe_classify_reply_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/pxe_classify_reply"
        ),
        checks::check_pxe_classify_reply,
    );
}

#[cfg(feature = "ipam")]
#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/server.rs"]
mod server_checks;

#[cfg(feature = "ipam")]
#[test]
fn dhcp4_server_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/dhcp4_server"),
        server_checks::check_dhcp4_server,
    );
}

#[cfg(feature = "ipam")]
#[test]
fn dhcp6_server_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/dhcp6_server"),
        server_checks::check_dhcp6_server,
    );
}
